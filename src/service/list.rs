//! The one list pipeline: read the page token of the query (refusing one of
//! another query or a tampered one), fetch one row more than the page, count,
//! and make the next token from the last row's sort key.

use crate::domain::paging::{Page, PageTokens};
use crate::domain::{Error, Reason, Result};

/// The paging of one list call.
#[derive(Debug)]
pub struct Listing<'a> {
    tokens: &'a PageTokens,
    fingerprint: String,
    after: Option<Vec<String>>,
    page_size: u64,
}

fn invalid_page_token() -> Error {
    Error::InvalidToken(
        Reason::PageTokenInvalid,
        "page_token",
        "page_token is not a token of this query; start again without it".into(),
    )
}

impl<'a> Listing<'a> {
    /// Reads `page_token` of the list `name` shaped by `filters`; the sort key
    /// of its rows has `key_len` parts.
    pub fn start(
        tokens: &'a PageTokens,
        name: &str,
        filters: &[&str],
        key_len: usize,
        page_size: u64,
        page_token: &str,
    ) -> Result<Self> {
        let fingerprint = tokens.fingerprint(name, filters);
        let after = tokens.decode(&fingerprint, page_token, key_len)?;
        Ok(Listing {
            tokens,
            fingerprint,
            after,
            page_size,
        })
    }

    /// The sort key of the last row of the previous page; `None` on the first.
    pub fn after(&self) -> Option<&[String]> {
        self.after.as_deref()
    }

    /// Part `index` of the position as text.
    pub fn after_text(&self, index: usize) -> Option<String> {
        self.after.as_ref().and_then(|key| key.get(index).cloned())
    }

    /// Part `index` of the position as a number; a token whose part is not
    /// one is refused.
    pub fn after_number(&self, index: usize) -> Result<Option<i64>> {
        match self.after.as_ref().and_then(|key| key.get(index)) {
            None => Ok(None),
            Some(value) => value.parse().map(Some).map_err(|_| invalid_page_token()),
        }
    }

    /// How many rows to fetch: one more than the page, to know whether
    /// another follows.
    pub fn limit(&self) -> u64 {
        self.page_size + 1
    }

    /// The page of `rows` (fetched with [`Self::limit`]), with the next token
    /// made from the sort key of its last row.
    pub fn finish<T>(
        self,
        mut rows: Vec<T>,
        total_size: i64,
        key_of: impl Fn(&T) -> Vec<String>,
    ) -> Page<T> {
        let next_page_token = if rows.len() as u64 > self.page_size {
            rows.truncate(self.page_size as usize);
            rows.last()
                .map(|last| self.tokens.encode(&self.fingerprint, key_of(last)))
                .unwrap_or_default()
        } else {
            String::new()
        };
        Page {
            items: rows,
            next_page_token,
            total_size,
        }
    }
}

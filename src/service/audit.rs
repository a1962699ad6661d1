//! The audit trail: every successful change, newest first.

use super::list::Listing;
use crate::domain::Result;
use crate::domain::events::{AuditEvent, AuditFilter};
use crate::domain::paging::{Page, PageTokens};
use crate::events::reader::{self, AuditEnd};
use crate::store::Db;

/// Reads the audit trail.
#[derive(Debug, Clone)]
pub struct Audit {
    db: Db,
    tokens: PageTokens,
}

impl Audit {
    pub fn new(db: Db, tokens: PageTokens) -> Self {
        Audit { db, tokens }
    }

    pub async fn list(
        &self,
        filter: AuditFilter,
        page_size: u64,
        page_token: &str,
    ) -> Result<Page<AuditEvent>> {
        let listing = Listing::start(
            &self.tokens,
            "audit_events",
            &[
                filter.organization_id.as_ref().map_or("", |id| id.as_str()),
                filter.actor.as_deref().unwrap_or(""),
            ],
            1,
            page_size,
            page_token,
        )?;
        let conn = self.db.conn();
        let before = listing.after_number(0)?;
        let end = match before {
            Some(seq) => AuditEnd::Before(seq),
            // The head covers every write acknowledged before this call.
            None => AuditEnd::Head(reader::head(conn).await?),
        };
        let rows = reader::audit_page(conn, &filter, end, listing.limit()).await?;
        // Counting the trail is a scan of every matching event: done for the
        // first page only, which is where a caller shows it.
        let total_size = match before {
            None => reader::count_audit(conn, &filter).await?,
            Some(_) => 0,
        };
        Ok(listing
            .finish(rows, total_size, |(seq, _)| vec![seq.to_string()])
            .map(|(_, event)| event))
    }
}

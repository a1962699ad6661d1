//! The audit trail: every successful change, newest first.

use super::list::Listing;
use crate::domain::Result;
use crate::domain::events::{AuditEvent, AuditFilter};
use crate::domain::paging::{Page, PageTokens};
use crate::events::reader;
use crate::events::sequencer::{self, Sequencer};
use crate::store::Db;

/// Reads the audit trail.
#[derive(Debug, Clone)]
pub struct Audit {
    db: Db,
    tokens: PageTokens,
    /// PostgreSQL: the first page waits for the changes committed before
    /// the call to have their positions.
    sequencer: Option<Sequencer>,
}

impl Audit {
    pub fn new(db: Db, tokens: PageTokens, sequencer: Option<Sequencer>) -> Self {
        Audit {
            db,
            tokens,
            sequencer,
        }
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
        if before.is_none() {
            sequencer::caught_up(self.sequencer.as_ref()).await;
        }
        let rows = reader::audit_page(conn, &filter, before, listing.limit()).await?;
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

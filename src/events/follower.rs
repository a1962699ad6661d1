//! The one follower of the log per process: every poll interval it reads the
//! head of the log and the changes since the last poll, hands the changes to
//! the listeners (the caches forget what they touched) and then reports the
//! head to the [`Notifier`], so watches wake for other replicas' commits too.
//! This process's own commits reach both directly, before their calls return.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Notifier;
use super::reader::{self, Change};
use crate::store::Db;

/// How often the log is read for other replicas' commits.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Changes read per query while catching up.
const CHANGES_PER_READ: u64 = 1000;

/// What follows the changes of the log.
pub trait ChangeListener: Send + Sync + 'static {
    /// Committed changes, in log order.
    fn changed(&self, changes: &[Change]);
    /// The follower cannot tell what changed (the log could not be read, or
    /// it is starting): forget everything.
    fn lost_track(&self);
}

/// Starts following the log until `shutdown` turns true.
pub fn spawn(
    db: Db,
    notifier: Notifier,
    listener: Arc<dyn ChangeListener>,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // Where this process follows from; until it knows, nothing cached can
        // be trusted.
        let mut after: Option<i64> = None;
        loop {
            if after.is_none() {
                after = reader::head(db.conn()).await.ok();
                listener.lost_track();
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
            let Some(position) = after else { continue };
            match catch_up(&db, listener.as_ref(), position).await {
                Ok(head) => {
                    after = Some(head);
                    notifier.committed(head);
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the event log; caches cleared");
                    after = None;
                }
            }
        }
    })
}

/// Hands every change in `(after, head]` to `listener`; returns the head.
async fn catch_up(
    db: &Db,
    listener: &dyn ChangeListener,
    mut after: i64,
) -> Result<i64, sea_orm::DbErr> {
    let head = reader::head(db.conn()).await?;
    while after < head {
        let changes = reader::changes(db.conn(), after, head, CHANGES_PER_READ).await?;
        listener.changed(&changes);
        after = match changes.last() {
            Some(last) if changes.len() as u64 >= CHANGES_PER_READ => last.seq,
            _ => head,
        };
    }
    Ok(head)
}

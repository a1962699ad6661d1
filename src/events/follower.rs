//! The one follower of the log per process: every poll interval it reads the
//! head of the log and the changes since the last poll, hands the changes to
//! the listeners (the caches forget what they touched) and then reports the
//! head to the [`Notifier`], so watches wake for other replicas' commits too.
//! On PostgreSQL it waits for the log's horizon at most one poll interval;
//! while an open transaction holds the horizon back, it still hands the
//! changes committed above it to the listeners.
//! This process's own commits reach both directly, before their calls return.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::Notifier;
use super::horizon::Reach;
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

/// While the log's head is held back (PostgreSQL: a transaction that took a
/// position is still open), a poll that finds more than this many events
/// above the follower's position clears the caches instead of reading them.
const HELD_READ_LIMIT: i64 = 10_000;

/// A head held back is logged after this long, and again every as long.
const HELD_WARNING: Duration = Duration::from_secs(5);

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
        // How long the head must have been held back for the next warning.
        let mut warn_at = HELD_WARNING;
        loop {
            if after.is_none()
                && let Ok(Reach::Horizon(head)) = reach(&db, every).await
            {
                after = Some(head);
                listener.lost_track();
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|down| *down) => return,
            }
            let Some(position) = after else { continue };
            match catch_up(&db, listener.as_ref(), position, every).await {
                Ok(Reach::Horizon(head)) => {
                    warn_at = HELD_WARNING;
                    after = Some(head);
                    notifier.not_held_back();
                    notifier.committed(head);
                }
                Ok(Reach::HeldBelow(last)) => {
                    notifier.held_back();
                    let held = notifier.held_back_for();
                    if held >= warn_at {
                        tracing::warn!(
                            position,
                            last,
                            held_seconds = held.as_secs(),
                            "the event log's head is held back by an open transaction; \
                             watches wait, caches forget what changed above it"
                        );
                        warn_at = held + HELD_WARNING;
                    }
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the event log; caches cleared");
                    after = None;
                }
            }
        }
    })
}

/// How far the log can be read now: on PostgreSQL waiting at most `within`
/// for the transactions in flight; on SQLite always the head.
async fn reach(db: &Db, within: Duration) -> Result<Reach, sea_orm::DbErr> {
    if db.backend() == sea_orm::DbBackend::Postgres {
        return super::horizon::reach(db.conn(), Some(within)).await;
    }
    Ok(Reach::Horizon(reader::head(db.conn()).await?))
}

/// Hands every change in `(after, head]` to `listener` and returns the
/// head. While the head is held back, hands over the changes committed
/// above `after` so far (or clears the caches, when there are many) and
/// returns how far it looked; the follower stays at `after`, so it reads
/// them again, with any that commit below them later.
async fn catch_up(
    db: &Db,
    listener: &dyn ChangeListener,
    mut after: i64,
    within: Duration,
) -> Result<Reach, sea_orm::DbErr> {
    let reach = reach(db, within).await?;
    let head = match reach {
        Reach::Horizon(head) => head,
        Reach::HeldBelow(last) if last - after > HELD_READ_LIMIT => {
            listener.lost_track();
            return Ok(reach);
        }
        Reach::HeldBelow(last) => last,
    };
    while after < head {
        let changes = reader::changes(db.conn(), after, head, CHANGES_PER_READ).await?;
        listener.changed(&changes);
        after = match changes.last() {
            Some(last) if changes.len() as u64 >= CHANGES_PER_READ => last.seq,
            _ => head,
        };
    }
    Ok(reach)
}

//! WAL checkpoints of an SQLite file, off the write path.
//!
//! SQLite copies the write-ahead log back into the database file in a
//! *checkpoint*. By default the connection whose commit takes the log past
//! 1,000 pages runs it, inside that commit: with the group-committing writer
//! that is every caller of the batch, who then waits for pages to be copied
//! and for the database file to be synced. Here the writer's commits only
//! wake a task that runs a passive checkpoint on a connection of the read
//! pool, a moment later, while the writer goes on (a passive checkpoint takes
//! no lock a writer or a reader waits for). The connections' own automatic
//! checkpoints stay as a backstop at [`BACKSTOP_PAGES`], should this task
//! fall behind or stop.

use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::sync::mpsc;

/// The log size, in pages, at which a connection's commit still runs a
/// checkpoint itself (SQLite's `wal_autocheckpoint`; its default is 1,000).
pub const BACKSTOP_PAGES: u32 = 20_000;

/// How long after a commit the checkpoint runs: the commits in between are
/// copied by the same checkpoint, about as many pages as SQLite's default
/// threshold at a few thousand writes a second.
const PAUSE: Duration = Duration::from_millis(100);

/// Pages left in the log after a checkpoint that are worth a warning: readers
/// that hold old snapshots keep the log from being copied, and it grows.
const LARGE_LOG_PAGES: i64 = 100_000;

/// The least time between two warnings of the same kind: a condition that
/// lasts (a failing disk, a reader that keeps its snapshot) is met by every
/// checkpoint, up to ten a second while writes go on.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// What one checkpoint did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkpoint {
    /// It ran, and found the log so.
    Done(Log),
    /// It failed (the error is logged, at most once a minute).
    Failed,
}

/// Tells the checkpoint task that a commit added to the log.
#[derive(Clone)]
pub struct Checkpoints {
    wake: mpsc::Sender<()>,
}

impl Checkpoints {
    /// Starts the task on `conn` (a pool of the same file); it tells
    /// `checkpointed` what each checkpoint did and ends when every handle
    /// is gone. Warnings of the same kind come at most once a minute, with
    /// the number of their kind left out since the last.
    pub fn spawn(
        conn: DatabaseConnection,
        checkpointed: impl Fn(Checkpoint) + Send + 'static,
    ) -> Checkpoints {
        let (wake, mut woken) = mpsc::channel(1);
        tokio::spawn(async move {
            let mut large_log = Throttle::new(WARN_EVERY, DefaultClock::default());
            let mut failed = Throttle::new(WARN_EVERY, DefaultClock::default());
            while woken.recv().await.is_some() {
                tokio::time::sleep(PAUSE).await;
                match checkpoint(&conn).await {
                    Ok(log) => {
                        checkpointed(Checkpoint::Done(log));
                        if log.left() < LARGE_LOG_PAGES {
                            tracing::trace!(
                                log_pages = log.pages,
                                copied = log.copied,
                                "checkpoint"
                            );
                        } else if let Some(since_last) = large_log.allow() {
                            tracing::warn!(
                                log_pages = log.pages,
                                left = log.left(),
                                not_logged_since_last = since_last,
                                "the SQLite write-ahead log could not be copied back: \
                                 a reader holds an old snapshot"
                            );
                        }
                    }
                    // Closed while the server stops: the last connection
                    // to close checkpoints.
                    Err(_) if conn.get_sqlite_connection_pool().is_closed() => break,
                    Err(err) => {
                        checkpointed(Checkpoint::Failed);
                        if let Some(since_last) = failed.allow() {
                            tracing::warn!(
                                error = %err,
                                not_logged_since_last = since_last,
                                "SQLite checkpoint failed"
                            );
                        }
                    }
                }
            }
        });
        Checkpoints { wake }
    }

    /// A commit added to the log: a checkpoint follows. Never waits.
    pub fn committed(&self) {
        // Full: a checkpoint is due already and copies this commit too.
        let _ = self.wake.try_send(());
    }
}

/// Lets one of a kind of event through at most once a period (`governor`'s
/// limiter, a burst of one), and counts the others.
struct Throttle<C: Clock> {
    limiter: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    held: u64,
}

impl<C: Clock> Throttle<C> {
    fn new(period: Duration, clock: C) -> Self {
        let quota = Quota::with_period(period).expect("a period longer than zero");
        Throttle {
            limiter: RateLimiter::direct_with_clock(quota, clock),
            held: 0,
        }
    }

    /// An event now: `Some(events held back since the last let through)`
    /// when it is let through, `None` when it is held back.
    fn allow(&mut self) -> Option<u64> {
        if self.limiter.check().is_err() {
            self.held += 1;
            return None;
        }
        Some(std::mem::take(&mut self.held))
    }
}

/// What a checkpoint found in the log and copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Log {
    /// Pages in the log.
    pub pages: i64,
    /// Of those, pages in the database file now.
    pub copied: i64,
}

impl Log {
    fn left(&self) -> i64 {
        self.pages - self.copied
    }
}

/// Runs one passive checkpoint: copies what no reader still needs from the
/// log, without waiting for anyone.
pub async fn checkpoint(conn: &impl ConnectionTrait) -> Result<Log, DbErr> {
    let row = conn
        .query_one_raw(sea_orm::Statement::from_string(
            conn.get_database_backend(),
            "PRAGMA wal_checkpoint(PASSIVE)",
        ))
        .await?
        .ok_or_else(|| DbErr::Custom("wal_checkpoint answered no row".into()))?;
    Ok(Log {
        pages: row.try_get_by_index::<i64>(1)?,
        copied: row.try_get_by_index::<i64>(2)?,
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use governor::clock::FakeRelativeClock;
    use sea_orm::Database;
    use tokio::time::Instant;

    use super::*;

    #[test]
    fn a_lasting_condition_is_let_through_once_a_period_with_the_count_held_back() {
        let clock = FakeRelativeClock::default();
        let mut throttle = Throttle::new(Duration::from_secs(60), clock.clone());
        assert_eq!(throttle.allow(), Some(0));
        for _ in 1..=10 {
            clock.advance(Duration::from_secs(1));
            assert_eq!(throttle.allow(), None);
        }
        clock.advance(Duration::from_secs(49));
        assert_eq!(throttle.allow(), None);
        clock.advance(Duration::from_secs(1));
        assert_eq!(throttle.allow(), Some(11));
        clock.advance(Duration::from_secs(1));
        assert_eq!(throttle.allow(), None);
        clock.advance(Duration::from_secs(139));
        assert_eq!(throttle.allow(), Some(1));
    }

    #[tokio::test]
    async fn a_checkpoint_that_fails_is_told_and_the_task_goes_on() {
        let path = std::env::temp_dir().join(format!(
            "orgs-checkpoints-{}.db",
            ulid::Ulid::new().to_string().to_lowercase()
        ));
        let url = |mode: &str| format!("sqlite://{}?mode={mode}", path.display());
        let writer = Database::connect(url("rwc")).await.expect("connect");
        writer
            .execute_unprepared(
                "PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER); INSERT INTO t VALUES (1);",
            )
            .await
            .expect("a database in WAL mode");
        // A read-only connection cannot copy the log into the file.
        let read_only = Database::connect(url("ro"))
            .await
            .expect("connect read-only");
        let failures = Arc::new(AtomicUsize::new(0));
        let done = Arc::new(AtomicUsize::new(0));
        let checkpoints = Checkpoints::spawn(read_only, {
            let (failures, done) = (failures.clone(), done.clone());
            move |checkpoint| {
                let counter = match checkpoint {
                    Checkpoint::Failed => &failures,
                    Checkpoint::Done(_) => &done,
                };
                counter.fetch_add(1, Ordering::SeqCst);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while failures.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
            checkpoints.committed();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            failures.load(Ordering::SeqCst) >= 2,
            "two failed checkpoints were told: {} failed, {} done",
            failures.load(Ordering::SeqCst),
            done.load(Ordering::SeqCst)
        );
        assert_eq!(done.load(Ordering::SeqCst), 0);
        drop(writer);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}

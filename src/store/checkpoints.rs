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

/// Tells the checkpoint task that a commit added to the log.
#[derive(Clone)]
pub struct Checkpoints {
    wake: mpsc::Sender<()>,
}

impl Checkpoints {
    /// Starts the task on `conn` (a pool of the same file); it tells
    /// `checkpointed` what each checkpoint found and ends when every handle
    /// is gone.
    pub fn spawn(
        conn: DatabaseConnection,
        checkpointed: impl Fn(Log) + Send + 'static,
    ) -> Checkpoints {
        let (wake, mut woken) = mpsc::channel(1);
        tokio::spawn(async move {
            while woken.recv().await.is_some() {
                tokio::time::sleep(PAUSE).await;
                let done = checkpoint(&conn).await;
                if let Ok(log) = &done {
                    checkpointed(*log);
                }
                match done {
                    Ok(log) if log.left() >= LARGE_LOG_PAGES => tracing::warn!(
                        log_pages = log.pages,
                        left = log.left(),
                        "the SQLite write-ahead log could not be copied back: \
                         a reader holds an old snapshot"
                    ),
                    Ok(log) => {
                        tracing::trace!(log_pages = log.pages, copied = log.copied, "checkpoint")
                    }
                    // Closed while the server stops: the last connection
                    // to close checkpoints.
                    Err(_) if conn.get_sqlite_connection_pool().is_closed() => break,
                    Err(err) => tracing::warn!(error = %err, "SQLite checkpoint failed"),
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

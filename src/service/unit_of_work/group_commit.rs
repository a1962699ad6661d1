//! Group commit for SQLite: one task owns the write connection; calls queue
//! their unit of work; the task runs the queued units one after another in one
//! transaction, each in its own savepoint (a failing unit rolls back only its
//! savepoint and answers its own error), commits once for all of them
//! (`synchronous=FULL`: one fsync per batch instead of one per call) and only
//! then answers each caller. While a batch commits, the next one queues up,
//! so the more calls are waiting, the larger the batches.
//!
//! Events keep their order: the units of a batch take sequence numbers one
//! after another on the one connection, and batches commit in turn, so log
//! order is commit order as before.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, TransactionTrait};
use tokio::sync::{mpsc, oneshot};

use crate::domain::{Error, Reason, Result};
use crate::events::Notifier;
use crate::events::follower::ChangeListener;
use crate::events::reader::Change;
use crate::store::Db;

/// The most units in one batch: bounds how long the first of them waits for
/// its commit.
const MAX_BATCH: usize = 512;

/// Units waiting for the writer; a full queue makes callers wait.
const QUEUE_CAPACITY: usize = 4096;

/// A unit of work: runs in the savepoint it is given and tells what it left.
type Job = Box<dyn FnOnce(DatabaseTransaction) -> BoxFuture<'static, Staged> + Send>;

/// What a unit left in the batch: the changes its events made, and how to
/// answer its caller once the batch has committed, or failed to.
pub(super) struct Staged {
    changes: Vec<Change>,
    last_seq: Option<i64>,
    finish: Finish,
}

/// Answers a unit's caller: `Ok` once its batch committed, else why not.
type Finish = Box<dyn FnOnce(std::result::Result<(), &str>) + Send>;

/// The answer of a unit, sent to its caller.
type Answer<T> = oneshot::Sender<Result<T>>;

impl Staged {
    /// A unit that kept nothing: its answer stands once the batch commits
    /// (it may have read what earlier units of the batch wrote).
    pub(super) fn answered<T: Send + 'static>(answer: Result<T>) -> StagedAnswer<T> {
        StagedAnswer {
            changes: Vec::new(),
            last_seq: None,
            answer,
        }
    }

    /// A unit whose savepoint was released, with the changes of its events.
    pub(super) fn committed<T: Send + 'static>(
        changes: Vec<Change>,
        last_seq: Option<i64>,
        answer: Result<T>,
    ) -> StagedAnswer<T> {
        StagedAnswer {
            changes,
            last_seq,
            answer,
        }
    }
}

/// A unit's outcome before it is joined to its caller's answer channel.
pub(super) struct StagedAnswer<T> {
    changes: Vec<Change>,
    last_seq: Option<i64>,
    answer: Result<T>,
}

impl<T: Send + 'static> StagedAnswer<T> {
    fn into_staged(self, reply: Answer<T>) -> Staged {
        let answer = self.answer;
        Staged {
            changes: self.changes,
            last_seq: self.last_seq,
            finish: Box::new(move |committed| {
                let answer = match committed {
                    Ok(()) => answer,
                    Err(failure) => Err(not_committed(failure)),
                };
                // The caller may have gone (its deadline passed): the change
                // stands all the same.
                let _ = reply.send(answer);
            }),
        }
    }
}

fn not_committed(failure: &str) -> Error {
    Error::Unavailable(
        Reason::DatabaseUnavailable,
        format!("the change was not committed ({failure}); retry"),
    )
}

/// Where calls queue their units of work for the writer task.
#[derive(Clone)]
pub(super) struct Queue {
    sender: mpsc::Sender<Job>,
}

impl Queue {
    /// Queues `unit` and waits until its batch has committed.
    pub(super) async fn run<T, U>(&self, unit: U) -> Result<T>
    where
        T: Send + 'static,
        U: FnOnce(DatabaseTransaction) -> BoxFuture<'static, StagedAnswer<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |savepoint| {
            Box::pin(async move {
                if reply.is_closed() {
                    // The caller is gone (its deadline passed while the
                    // unit waited): it runs no change.
                    if let Err(err) = savepoint.rollback().await {
                        tracing::warn!(error = %err, "rollback failed");
                    }
                    return Staged {
                        changes: Vec::new(),
                        last_seq: None,
                        finish: Box::new(|_| {}),
                    };
                }
                unit(savepoint).await.into_staged(reply)
            })
        });
        if self.sender.send(job).await.is_err() {
            return Err(not_committed("the writer has stopped"));
        }
        // A dropped reply means the unit never ran to its end (its savepoint
        // could not be opened, or it panicked): nothing of it was kept.
        answer
            .await
            .unwrap_or_else(|_| Err(not_committed("the change did not run to its end")))
    }
}

/// Starts the writer task on `conn`; it ends when every [`Queue`] is gone.
pub(super) fn spawn(
    conn: DatabaseConnection,
    notifier: Notifier,
    listener: Arc<dyn ChangeListener>,
) -> Queue {
    let (sender, mut jobs) = mpsc::channel::<Job>(QUEUE_CAPACITY);
    tokio::spawn(async move {
        while let Some(first) = jobs.recv().await {
            let batch = match Db::begin_batch(&conn).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot begin a write transaction");
                    drop(first);
                    continue;
                }
            };
            let mut staged = Vec::new();
            let mut next = Some(first);
            while let Some(job) = next.take() {
                match batch.begin().await {
                    Ok(savepoint) => match AssertUnwindSafe(job(savepoint)).catch_unwind().await {
                        Ok(unit) => staged.push(unit),
                        Err(_) => {
                            tracing::error!("a change panicked; its savepoint is rolled back")
                        }
                    },
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot open a savepoint");
                        drop(job);
                        break;
                    }
                }
                if staged.len() < MAX_BATCH {
                    next = jobs.try_recv().ok();
                }
            }
            finish(batch.commit().await, staged, &notifier, listener.as_ref());
        }
    });
    Queue { sender }
}

/// Answers every unit of a batch; after a commit, the caches forget what it
/// touched and the watches wake first.
fn finish(
    committed: std::result::Result<(), sea_orm::DbErr>,
    staged: Vec<Staged>,
    notifier: &Notifier,
    listener: &dyn ChangeListener,
) {
    match committed {
        Ok(()) => {
            let changes: Vec<Change> = staged
                .iter()
                .flat_map(|unit| unit.changes.iter().cloned())
                .collect();
            if !changes.is_empty() {
                listener.changed(&changes);
            }
            if let Some(last_seq) = staged.iter().filter_map(|unit| unit.last_seq).max() {
                notifier.committed(last_seq);
            }
            for unit in staged {
                (unit.finish)(Ok(()));
            }
        }
        Err(err) => {
            tracing::warn!(error = %err, "a batch of changes failed to commit");
            let failure = err.to_string();
            for unit in staged {
                (unit.finish)(Err(&failure));
            }
        }
    }
}

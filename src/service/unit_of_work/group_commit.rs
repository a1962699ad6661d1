//! Group commit for SQLite: one task owns the write connection; calls queue
//! their unit of work; the task runs the queued units one after another in one
//! transaction, each in its own savepoint (a failing unit rolls back only its
//! savepoint and answers its own error), commits once for all of them
//! (`synchronous=FULL`: one fsync per batch instead of one per call) and only
//! then answers each caller. While a batch commits, the next one queues up,
//! so the more calls are waiting, the larger the batches.
//!
//! Every statement is a round trip to the connection's worker thread, which
//! wakes a thread on each side: that, not SQLite, is what a unit costs. So
//! the writer spends as few as it can around a unit's own statements. The
//! savepoints nest instead of being released: a unit that keeps its changes
//! leaves its savepoint open and the next one opens its own inside it, with
//! its first statement ([`scope`](super::scope)), and a unit whose changes are
//! discarded rolls back to its own, which stays open for the next; the
//! commit ends them all. And the batch gives the events their positions
//! itself and writes them all at its end: it reads the counter once, as its
//! transaction holds the database, and inserts the events of its units with
//! the counter's new value in one round trip before the commit. No unit reads
//! the log, so none misses the events not yet written.
//!
//! The batch's commit does not copy the log back into the database file
//! (SQLite's automatic checkpoint, which would make every caller of that
//! batch wait): it wakes [`Checkpoints`], which does it beside the writer.
//!
//! Events keep their order: the units of a batch take positions one after
//! another on the one connection, and batches commit in turn, so log order
//! is commit order as before.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;
use sea_orm::{ConnectionTrait, DatabaseConnection, DatabaseTransaction};
use tokio::sync::{mpsc, oneshot};

use super::scope::BatchConn;

use crate::domain::{Error, Reason, Result};
use crate::events::follower::ChangeListener;
use crate::events::reader::Change;
use crate::events::{self, NewEvent, Notifier};
use crate::store::Db;
use crate::store::checkpoints::Checkpoints;

/// The most units in one batch: bounds how long the first of them waits for
/// its commit.
const MAX_BATCH: usize = 512;

/// Units waiting for the writer; a full queue makes callers wait.
const QUEUE_CAPACITY: usize = 4096;

/// Discards what a unit wrote: back to its savepoint, the innermost of that
/// name, which stays open.
const ROLL_BACK_UNIT: &str = "ROLLBACK TO orgs_unit";

/// What a unit runs on: the batch's transaction, in a savepoint of its own
/// that the writer opened and ends; the unit never commits or rolls back.
pub(super) struct Unit {
    pub(super) conn: Arc<BatchConn>,
    /// The position the unit's first event takes.
    pub(super) first_seq: i64,
}

/// A unit of work: runs in its savepoint and tells what it left.
type Job = Box<dyn FnOnce(Unit) -> BoxFuture<'static, Staged> + Send>;

/// What a unit left in the batch: whether its changes stay, its events, the
/// changes they made, and how to answer its caller once the batch has
/// committed, or failed to.
pub(super) struct Staged {
    outcome: Outcome,
    events: Vec<NewEvent>,
    changes: Vec<Change>,
    last_seq: Option<i64>,
    finish: Finish,
}

/// What the writer does with a unit's savepoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The unit ran no statement: its savepoint serves the next one.
    Untouched,
    /// Roll back what the unit wrote.
    Discard,
    /// Its changes stay, and its events are written at the batch's end.
    Kept,
}

/// Answers a unit's caller: `Ok` once its batch committed, else why not.
type Finish = Box<dyn FnOnce(std::result::Result<(), &str>) + Send>;

/// The answer of a unit, sent to its caller.
type Answer<T> = oneshot::Sender<Result<T>>;

impl Staged {
    /// A unit whose changes are discarded: its answer stands once the batch
    /// commits (it may have read what earlier units of the batch wrote).
    pub(super) fn answered<T: Send + 'static>(answer: Result<T>) -> StagedAnswer<T> {
        StagedAnswer {
            outcome: Outcome::Discard,
            events: Vec::new(),
            first_seq: 0,
            answer,
        }
    }

    /// A unit whose changes stay, with its events, which take the positions
    /// from `first_seq` (the unit's [`Unit::first_seq`]) on.
    pub(super) fn kept<T: Send + 'static>(
        events: Vec<NewEvent>,
        first_seq: i64,
        answer: Result<T>,
    ) -> StagedAnswer<T> {
        StagedAnswer {
            outcome: Outcome::Kept,
            events,
            first_seq,
            answer,
        }
    }
}

/// A unit's outcome before it is joined to its caller's answer channel.
pub(super) struct StagedAnswer<T> {
    outcome: Outcome,
    events: Vec<NewEvent>,
    first_seq: i64,
    answer: Result<T>,
}

impl<T: Send + 'static> StagedAnswer<T> {
    fn into_staged(self, reply: Answer<T>) -> Staged {
        let answer = self.answer;
        let last_seq =
            (!self.events.is_empty()).then(|| self.first_seq + self.events.len() as i64 - 1);
        Staged {
            outcome: self.outcome,
            changes: super::changes(&self.events, last_seq),
            events: self.events,
            last_seq,
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
    /// Queues `change` and waits until its batch has committed.
    pub(super) async fn run<T, U>(&self, change: U) -> Result<T>
    where
        T: Send + 'static,
        U: FnOnce(Unit) -> BoxFuture<'static, StagedAnswer<T>> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Job = Box::new(move |unit| {
            Box::pin(async move {
                if reply.is_closed() {
                    // The caller is gone (its deadline passed while the
                    // unit waited): it runs no change.
                    return Staged {
                        outcome: Outcome::Untouched,
                        events: Vec::new(),
                        changes: Vec::new(),
                        last_seq: None,
                        finish: Box::new(|_| {}),
                    };
                }
                change(unit).await.into_staged(reply)
            })
        });
        if self.sender.send(job).await.is_err() {
            return Err(not_committed("the writer has stopped"));
        }
        // A dropped reply means the unit never ran to its end (the batch
        // could not begin, or it panicked): nothing of it was kept.
        answer
            .await
            .unwrap_or_else(|_| Err(not_committed("the change did not run to its end")))
    }
}

/// Starts the writer task on `conn`; it ends when every [`Queue`] is gone.
pub(super) fn spawn(
    conn: DatabaseConnection,
    checkpoints: Checkpoints,
    notifier: Notifier,
    listener: Arc<dyn ChangeListener>,
) -> Queue {
    let (sender, mut jobs) = mpsc::channel::<Job>(QUEUE_CAPACITY);
    tokio::spawn(async move {
        while let Some(first) = jobs.recv().await {
            let (batch, first_seq) = match begin(&conn).await {
                Ok(begun) => begun,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot begin a write transaction");
                    drop(first);
                    continue;
                }
            };
            let batch = Arc::new(BatchConn::new(batch));
            let mut run = Run {
                first_seq,
                next_seq: first_seq,
                staged: Vec::new(),
            };
            let mut failure = None;
            let mut next = Some(first);
            while let Some(job) = next.take() {
                if let Err(err) = run.unit(&batch, job).await {
                    failure = Some(err);
                    break;
                }
                if run.staged.len() < MAX_BATCH {
                    next = jobs.try_recv().ok();
                }
            }
            let events = run.take_events();
            let committed = end(batch, failure, &events, run.first_seq).await;
            if committed.is_ok() {
                checkpoints.committed();
            }
            finish(committed, run.staged, &notifier, listener.as_ref());
        }
    });
    Queue { sender }
}

/// Begins a batch and reads the position its first event takes.
async fn begin(
    conn: &DatabaseConnection,
) -> std::result::Result<(DatabaseTransaction, i64), sea_orm::DbErr> {
    let batch = Db::begin_batch(conn).await?;
    match events::last_position(&batch).await {
        Ok(last) => Ok((batch, last + 1)),
        Err(err) => {
            if let Err(rollback) = batch.rollback().await {
                tracing::warn!(error = %rollback, "rollback failed");
            }
            Err(err)
        }
    }
}

/// The units of one batch so far.
struct Run {
    /// The position the batch's first event takes.
    first_seq: i64,
    /// The position the next event takes.
    next_seq: i64,
    staged: Vec<Staged>,
}

impl Run {
    /// Runs `job` in a savepoint of its own; an error leaves the batch in a
    /// state that must not be committed.
    async fn unit(&mut self, batch: &Arc<BatchConn>, job: Job) -> std::result::Result<(), String> {
        let unit = Unit {
            conn: batch.clone(),
            first_seq: self.next_seq,
        };
        let outcome = match AssertUnwindSafe(job(unit)).catch_unwind().await {
            Ok(staged) => {
                let outcome = staged.outcome;
                if let Some(last_seq) = staged.last_seq {
                    self.next_seq = last_seq + 1;
                }
                self.staged.push(staged);
                outcome
            }
            Err(_) => {
                tracing::error!("a change panicked; its savepoint is rolled back");
                Outcome::Discard
            }
        };
        if batch.take_unsure() {
            return Err("a change's savepoint may not have opened".into());
        }
        // A unit that ran no statement opened no savepoint: the next one
        // opens it.
        if batch.opened() {
            match outcome {
                Outcome::Untouched => {}
                // Its savepoint stays open, empty, for the next unit.
                Outcome::Discard => {
                    batch
                        .txn()
                        .execute_unprepared(ROLL_BACK_UNIT)
                        .await
                        .map_err(|err| err.to_string())?;
                }
                Outcome::Kept => batch.open_next(),
            }
        }
        Ok(())
    }

    /// The events of the kept units, in the order of their positions.
    fn take_events(&mut self) -> Vec<NewEvent> {
        let events: Vec<NewEvent> = self
            .staged
            .iter_mut()
            .filter(|unit| unit.outcome == Outcome::Kept)
            .flat_map(|unit| std::mem::take(&mut unit.events))
            .collect();
        debug_assert_eq!(self.first_seq + events.len() as i64, self.next_seq);
        events
    }
}

/// Ends a batch: writes its events and the last position they took, and
/// commits; or, after a `failure`, rolls it all back.
async fn end(
    batch: Arc<BatchConn>,
    failure: Option<String>,
    events: &[NewEvent],
    first_seq: i64,
) -> std::result::Result<(), String> {
    // Every unit has ended, and with it its share of the transaction.
    let Ok(batch) = Arc::try_unwrap(batch) else {
        return Err("a change outlived its batch".into());
    };
    let batch = batch.into_txn();
    let stored = match failure {
        Some(failure) => Err(failure),
        None => events::insert_with_last_position(&batch, events, first_seq)
            .await
            .map_err(|err| err.to_string()),
    };
    match stored {
        Ok(()) => batch.commit().await.map_err(|err| err.to_string()),
        Err(failure) => {
            if let Err(err) = batch.rollback().await {
                tracing::warn!(error = %err, "rollback failed");
            }
            Err(failure)
        }
    }
}

/// Answers every unit of a batch; after a commit, the caches forget what it
/// touched and the watches wake first.
fn finish(
    committed: std::result::Result<(), String>,
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
        Err(failure) => {
            tracing::warn!(error = %failure, "a batch of changes failed to commit");
            for unit in staged {
                (unit.finish)(Err(&failure));
            }
        }
    }
}

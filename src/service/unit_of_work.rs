//! One unit of work per change. [`Writer::write`] opens a transaction, claims
//! the call's idempotency key (or answers with the stored response of the call
//! that claimed it), runs the change, appends the events the change emitted
//! (but for those its own statements wrote, [`Tx::emitted_by_statement`]),
//! stores the answer under the key and commits — or rolls all of it back, for
//! an error or for `validate_only`. After the commit this process's caches
//! forget what the change touched, before the caller hears of it; its
//! watches wake when the log's head passes the events (at once on SQLite,
//! once the transactions in flight with them end on PostgreSQL).
//!
//! The change is a closure that owns what it needs (`'static + Send`), so the
//! writer decides where and when it runs.

use std::sync::Arc;

use futures::future::BoxFuture;
use serde::{Serialize, de::DeserializeOwned};

use crate::domain::time::{Clock, Micros};
use crate::domain::{Actor, Error, Reason, Result};
use crate::events::follower::ChangeListener;
use crate::events::horizon::Horizon;
use crate::events::reader::Change;
use crate::events::{self, NewEvent, Notifier};
use crate::store::checkpoints::{self, Checkpoints};
use crate::store::{self, Db, repo::idempotency};

mod group_commit;
mod scope;
mod tx;

use scope::Scope;
pub use tx::Tx;

/// How long idempotency records are kept, in microseconds (at least 24 hours).
const IDEMPOTENCY_RETENTION_MICROS: Micros = 48 * 3600 * 1_000_000;

/// The idempotency key of a create or accept call: its `request_id` and a
/// fingerprint of the whole request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Idempotency {
    pub request_id: String,
    pub fingerprint: String,
}

/// Who makes a change, and how.
#[derive(Debug, Clone)]
pub struct Call {
    pub actor: Actor,
    /// A replay of the same key answers as the first call did.
    pub idempotency: Option<Idempotency>,
    /// Check and compute everything, write nothing.
    pub validate_only: bool,
}

impl Call {
    /// A plain change: no idempotency key, committed.
    pub fn new(actor: Actor) -> Self {
        Call {
            actor,
            idempotency: None,
            validate_only: false,
        }
    }

    /// A change that may carry a `request_id` and may be a preview.
    pub fn idempotent(actor: Actor, idempotency: Option<Idempotency>, validate_only: bool) -> Self {
        Call {
            actor,
            idempotency,
            validate_only,
        }
    }
}

/// The end of a claim: a stored answer, the key claimed for this call, or a
/// key held by a call that has not finished.
enum Claim<T> {
    Replay(T),
    Claimed,
    Held,
}

/// Runs changes as units of work.
#[derive(Clone)]
pub struct Writer {
    db: Db,
    clock: Arc<dyn Clock>,
    notifier: Notifier,
    listener: Arc<dyn ChangeListener>,
    /// The queue of the group-committing writer (an SQLite file); without
    /// it every change commits its own transaction.
    batches: Option<group_commit::Queue>,
    /// PostgreSQL: after a commit with events, this finds the log's new
    /// horizon and wakes the watches; writers do not wait for it.
    horizon: Option<Horizon>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer").finish_non_exhaustive()
    }
}

/// What an attempt leaves to do.
enum Attempt<T> {
    /// Nothing to commit (rolled back, or answered from an earlier call).
    Answered(Result<T>),
    /// A transaction to append the events to and commit; then the answer.
    Commit {
        txn: Scope,
        events: Vec<NewEvent>,
        /// Written by the change's statements already (PostgreSQL).
        written: Vec<NewEvent>,
        answer: Result<T>,
    },
}

impl Writer {
    /// `listener` hears of this process's own commits, as the log follower
    /// tells it of other replicas'. On an SQLite file this starts the one
    /// task that writes: it runs queued changes in batches, one transaction
    /// and one commit per batch. On PostgreSQL it starts the task that
    /// moves the log's horizon on after its commits.
    pub fn new(
        db: Db,
        clock: Arc<dyn Clock>,
        notifier: Notifier,
        listener: Arc<dyn ChangeListener>,
        checkpointed: impl Fn(checkpoints::Checkpoint) + Send + 'static,
    ) -> Self {
        let batches = db.batch_connection().map(|conn| {
            // The log is copied back on a connection of the read pool.
            let checkpoints = Checkpoints::spawn(db.conn().clone(), checkpointed);
            group_commit::spawn(
                conn.clone(),
                checkpoints,
                notifier.clone(),
                listener.clone(),
            )
        });
        let horizon = (db.backend() == sea_orm::DbBackend::Postgres)
            .then(|| Horizon::spawn(db.conn().clone(), notifier.clone()));
        Writer {
            db,
            clock,
            notifier,
            listener,
            batches,
            horizon,
        }
    }

    pub fn now(&self) -> Micros {
        self.clock.now_micros()
    }

    /// Runs `change` as one unit of work for `call`. On an SQLite file the
    /// change joins the writer's next batch, in a savepoint of its own: its
    /// failure rolls back only its savepoint, and its answer comes once the
    /// batch has committed. A unit of work that loses a race in the database
    /// (a serialization failure or a deadlock, on PostgreSQL) rolled back
    /// whole, so it runs again from the start, in a new transaction, up to
    /// [`CONFLICT_ATTEMPTS`] times in all.
    pub async fn write<T, F>(&self, call: Call, change: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Clone + Send + 'static,
    {
        let mut attempt = 1;
        loop {
            match self.attempt(call.clone(), change.clone()).await {
                Err(err) if err.is_conflict() && attempt < CONFLICT_ATTEMPTS => {
                    tracing::debug!(attempt, "unit of work lost a race; running it again");
                    tokio::time::sleep(conflict_backoff(attempt)).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// One attempt at a unit of work.
    async fn attempt<T, F>(&self, call: Call, change: F) -> Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send + 'static,
    {
        if let Some(queue) = &self.batches {
            let (db, clock) = (self.db.clone(), self.clock.clone());
            return queue
                .run(move |unit| {
                    Box::pin(async move {
                        let now = clock.now_micros();
                        match attempt(&db, Scope::Unit(unit.conn), now, call, change).await {
                            Attempt::Answered(answer) => group_commit::Staged::answered(answer),
                            // Its events are written at the batch's end.
                            Attempt::Commit {
                                events,
                                written,
                                answer,
                                ..
                            } if written.is_empty() => {
                                group_commit::Staged::kept(events, unit.first_seq, answer)
                            }
                            // The writer numbers every event of its batch.
                            Attempt::Commit { .. } => group_commit::Staged::answered(Err(
                                Error::internal("a change in a batch wrote its own events"),
                            )),
                        }
                    })
                })
                .await;
        }
        let txn = self.db.begin().await?;
        match attempt(&self.db, Scope::Own(txn), self.now(), call, change).await {
            Attempt::Answered(answer) => answer,
            Attempt::Commit {
                txn: Scope::Unit(_),
                ..
            } => Err(Error::internal(
                "a change of its own came back as a batch's",
            )),
            Attempt::Commit {
                txn: Scope::Own(txn),
                events,
                written,
                answer,
            } => {
                if let Some(horizon) = &self.horizon {
                    events::horizon::append(&txn, &events).await?;
                    txn.commit().await?;
                    // Forgotten here before the answer: this replica must
                    // answer its own writes from fresh state, before its log
                    // follower reads the events.
                    let touched = unpositioned(written.iter().chain(&events));
                    if !touched.is_empty() {
                        self.listener.changed(&touched);
                        // Not waited for: committed, the answer stands; a
                        // reader of the log finds a horizon itself, and the
                        // follower finds one every poll.
                        horizon.nudge();
                    }
                    return answer;
                }
                if !written.is_empty() {
                    return Err(Error::internal(
                        "a change wrote its own events without a log horizon",
                    ));
                }
                let last_seq = events::append(&txn, &events).await?;
                txn.commit().await?;
                let changes = changes(&events, last_seq);
                if !changes.is_empty() {
                    self.listener.changed(&changes);
                }
                if let Some(last_seq) = last_seq {
                    self.notifier.committed(last_seq);
                }
                answer
            }
        }
    }
}

/// What the committed events touched, for the caches.
fn changes(events: &[NewEvent], last_seq: Option<i64>) -> Vec<Change> {
    let Some(last_seq) = last_seq else {
        return Vec::new();
    };
    let first_seq = last_seq - events.len() as i64 + 1;
    events
        .iter()
        .enumerate()
        .map(|(offset, event)| Change {
            seq: first_seq + offset as i64,
            kind: event.kind,
            organization_id: event.organization_id.clone(),
        })
        .collect()
}

/// What a change committed on PostgreSQL touched (`seq` 0: the positions
/// its events took are not read back).
fn unpositioned<'e>(events: impl Iterator<Item = &'e NewEvent>) -> Vec<Change> {
    events
        .map(|event| Change {
            seq: 0,
            kind: event.kind,
            organization_id: event.organization_id.clone(),
        })
        .collect()
}

/// Claims the idempotency key, runs the change and stores its answer in
/// `txn`; rolls back what is not to be kept.
async fn attempt<T, F>(db: &Db, txn: Scope, now: Micros, call: Call, change: F) -> Attempt<T>
where
    T: Serialize + DeserializeOwned + Send + 'static,
    F: for<'t> FnOnce(&'t mut Tx) -> BoxFuture<'t, Result<T>> + Send + 'static,
{
    let Call {
        actor,
        idempotency,
        validate_only,
    } = call;
    let key = idempotency.filter(|_| !validate_only);
    let mut tx = Tx {
        txn,
        now,
        request_id: key.as_ref().map(|k| k.request_id.clone()),
        actor,
        events: Vec::new(),
        written: Vec::new(),
        commit_on_error: false,
    };
    if let Some(key) = &key {
        match claim(&tx, key).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::Replay(previous)) => {
                rollback(tx.txn).await;
                return Attempt::Answered(Ok(previous));
            }
            Ok(Claim::Held) => {
                let actor = tx.actor.clone();
                rollback(tx.txn).await;
                // Another call holds or held this key: answer as it did.
                return Attempt::Answered(match replay(db.conn(), &actor, key, now).await {
                    Ok(Some(previous)) => Ok(previous),
                    Ok(None) => Err(Error::Unavailable(
                        Reason::DatabaseUnavailable,
                        "a call with the same request_id is in progress; retry".into(),
                    )),
                    Err(err) => Err(err),
                });
            }
            Err(err) => {
                rollback(tx.txn).await;
                return Attempt::Answered(Err(err));
            }
        }
    }
    match change(&mut tx).await {
        Ok(value) if validate_only => {
            rollback(tx.txn).await;
            Attempt::Answered(Ok(value))
        }
        Ok(value) => {
            if let Some(key) = &key {
                let stored = match serde_json::to_string(&value) {
                    Ok(json) => idempotency::store_response(
                        tx.conn(),
                        &tx.actor.sub,
                        &key.request_id,
                        &json,
                    )
                    .await
                    .map_err(Error::from),
                    Err(err) => Err(Error::internal(err)),
                };
                if let Err(err) = stored {
                    rollback(tx.txn).await;
                    return Attempt::Answered(Err(err));
                }
            }
            Attempt::Commit {
                txn: tx.txn,
                events: tx.events,
                written: tx.written,
                answer: Ok(value),
            }
        }
        Err(err) if tx.commit_on_error && !validate_only => {
            if let Some(key) = &key {
                // A failed call answers nothing to replay: a retry runs afresh.
                let released =
                    idempotency::release(tx.conn(), &tx.actor.sub, &key.request_id).await;
                if let Err(released) = released {
                    rollback(tx.txn).await;
                    return Attempt::Answered(Err(released.into()));
                }
            }
            Attempt::Commit {
                txn: tx.txn,
                events: tx.events,
                written: tx.written,
                answer: Err(err),
            }
        }
        Err(err) => {
            rollback(tx.txn).await;
            Attempt::Answered(Err(err))
        }
    }
}

/// Attempts of a unit of work that keeps losing races before the caller
/// gets ABORTED `SERIALIZATION_FAILURE`.
pub const CONFLICT_ATTEMPTS: u32 = 5;

/// A short, growing, jittered pause before the next attempt, so that the
/// changes that collided do not collide again in lockstep.
fn conflict_backoff(attempt: u32) -> std::time::Duration {
    let ceiling_millis = 5u64 << attempt.min(5);
    std::time::Duration::from_millis(rand::random_range(1..=ceiling_millis))
}

/// Undoes a change: rolls back its own transaction; the writer rolls back a
/// change of its batch itself.
async fn rollback(txn: Scope) {
    if let Scope::Own(txn) = txn
        && let Err(err) = txn.rollback().await
    {
        tracing::warn!(error = %err, "rollback failed");
    }
}

/// Claims the key for this call. The claim is made first, so a concurrent
/// call with the same key waits for this one and then answers as it did.
async fn claim<T: DeserializeOwned>(tx: &Tx, key: &Idempotency) -> Result<Claim<T>> {
    if let Some(previous) = replay(tx.conn(), &tx.actor, key, tx.now).await? {
        return Ok(Claim::Replay(previous));
    }
    // An expired record of this key no longer counts; occasionally purge
    // every expired record.
    let cutoff = tx.now - IDEMPOTENCY_RETENTION_MICROS;
    idempotency::delete_expired_claim(tx.conn(), &tx.actor.sub, &key.request_id, cutoff).await?;
    if rand::random_ratio(1, 256) {
        idempotency::purge(tx.conn(), cutoff).await?;
    }
    let claimed = idempotency::claim(
        tx.conn(),
        &tx.actor.sub,
        &key.request_id,
        tx.actor.action,
        &key.fingerprint,
        tx.now,
    )
    .await;
    match claimed {
        Ok(()) => Ok(Claim::Claimed),
        Err(err) if store::is_unique_violation(&err) => Ok(Claim::Held),
        Err(err) => Err(err.into()),
    }
}

/// The stored answer of an earlier call with the same key, if it finished.
/// The same key with other content is refused.
async fn replay<T: DeserializeOwned>(
    conn: &impl sea_orm::ConnectionTrait,
    actor: &Actor,
    key: &Idempotency,
    now: Micros,
) -> Result<Option<T>> {
    let row = idempotency::get(
        conn,
        &actor.sub,
        &key.request_id,
        now - IDEMPOTENCY_RETENTION_MICROS,
    )
    .await?;
    let Some(row) = row else { return Ok(None) };
    if row.method != actor.action || row.fingerprint != key.fingerprint {
        return Err(Error::FailedPrecondition(
            Reason::RequestIdReused,
            "request_id was used before with different content".into(),
        ));
    }
    if row.response.is_empty() {
        return Ok(None);
    }
    serde_json::from_str(&row.response)
        .map(Some)
        .map_err(Error::internal)
}

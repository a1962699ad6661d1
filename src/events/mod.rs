//! The append-only event log (an outbox written in the transaction of each
//! change) and the in-process wake-up of its readers. Other replicas see new
//! events when the [`follower`] next reads the log.

pub mod follower;
pub mod horizon;
pub mod pruning;
pub mod reader;
pub mod view;

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryTrait,
};
use tokio::sync::watch;

use crate::domain::events::EventKind;
use crate::domain::time::Micros;
use crate::store::entity::{event_sequence, events as log};

/// An event waiting in a transaction for its sequence number.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// What changed; `None` for audit entries that change nothing (a failed
    /// verification attempt).
    pub kind: Option<EventKind>,
    /// The RPC whose call recorded it, or the kind of a billing event.
    pub action: String,
    pub actor: String,
    pub on_behalf_of: String,
    pub organization_id: String,
    pub resource_id: String,
    pub request_id: String,
    /// Audit events are what `ListAuditEvents` shows: one per change a caller
    /// made. Further events of the same call and derived events (an
    /// organization became billable) are not.
    pub audit: bool,
    /// The resource after the change (its last state for a deletion), or the
    /// billing fact.
    pub payload: serde_json::Value,
    pub create_time: Micros,
}

/// A stored event.
pub type EventRow = crate::store::entity::events::Model;

/// Appends events with consecutive sequence numbers. The counter row is taken
/// last, just before commit, so sequence order is commit order and a reader that
/// has seen `seq` never later finds a smaller one appear.
/// Used where a change commits its own transaction on SQLite (an in-memory
/// database); the group-committing writer of an SQLite file numbers the
/// events of its batch itself ([`insert_at`]), and on PostgreSQL events take
/// positions from a sequence ([`horizon::append`]).
pub async fn append(
    conn: &impl ConnectionTrait,
    events: &[NewEvent],
) -> Result<Option<i64>, DbErr> {
    if events.is_empty() {
        return Ok(None);
    }
    let count = events.len() as i64;
    let counter = event_sequence::Entity::update_many()
        .col_expr(
            event_sequence::Column::LastSeq,
            Expr::col(event_sequence::Column::LastSeq).add(count),
        )
        .filter(event_sequence::Column::Id.eq(1))
        .exec_with_returning(conn)
        .await?;
    let last = counter
        .first()
        .map(|row| row.last_seq)
        .ok_or_else(|| DbErr::RecordNotFound("event_sequence".into()))?;
    log::Entity::insert_many(rows(events, last - count + 1))
        .exec_without_returning(conn)
        .await?;
    Ok(Some(last))
}

/// The last position given to an event. The group-committing writer reads it
/// once per batch: its transaction holds the database, so no other writer can
/// move it until the batch commits.
pub async fn last_position(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    event_sequence::Entity::find_by_id(1)
        .one(conn)
        .await?
        .map(|row| row.last_seq)
        .ok_or_else(|| DbErr::RecordNotFound("event_sequence".into()))
}

/// Inserts `events` at the positions from `first` on and stores the last
/// position given out as the counter's value, in one round trip to the
/// database. The group-committing writer of an SQLite file writes the events
/// of a whole batch so, before it commits.
pub async fn insert_with_last_position(
    conn: &impl ConnectionTrait,
    events: &[NewEvent],
    first: i64,
) -> Result<(), DbErr> {
    /// Rows per INSERT: 11 values each, well within SQLite's 32,766
    /// parameters per statement.
    const ROWS_PER_INSERT: usize = 1_000;
    if events.is_empty() {
        return Ok(());
    }
    let backend = conn.get_database_backend();
    let last = first + events.len() as i64 - 1;
    let mut statements = Vec::new();
    for (chunk, rows_of) in events.chunks(ROWS_PER_INSERT).enumerate() {
        let from = first + (chunk * ROWS_PER_INSERT) as i64;
        statements.push(log::Entity::insert_many(rows(rows_of, from)).build(backend));
    }
    statements.push(
        event_sequence::Entity::update_many()
            .col_expr(event_sequence::Column::LastSeq, Expr::value(last))
            .filter(event_sequence::Column::Id.eq(1))
            .build(backend),
    );
    conn.execute_raw(crate::store::one_string(statements))
        .await?;
    Ok(())
}

/// The rows of `events` at the positions from `first` on.
fn rows(events: &[NewEvent], first: i64) -> impl Iterator<Item = log::ActiveModel> + '_ {
    events
        .iter()
        .enumerate()
        .map(move |(offset, event)| log::ActiveModel {
            seq: Set(first + offset as i64),
            id: Set(crate::domain::ids::new_id(crate::domain::ids::EVENT)),
            kind: Set(event
                .kind
                .map(EventKind::as_str)
                .unwrap_or_default()
                .to_string()),
            action: Set(event.action.clone()),
            actor: Set(event.actor.clone()),
            on_behalf_of: Set(event.on_behalf_of.clone()),
            organization_id: Set(event.organization_id.clone()),
            resource_id: Set(event.resource_id.clone()),
            request_id: Set(event.request_id.clone()),
            audit: Set(event.audit),
            payload: Set(event.payload.to_string()),
            create_time: Set(event.create_time),
        })
}

/// What every watch of a process shares, billing and event streams alike: the
/// wake-up on commits, the server's shutdown flag and the one tail of the log.
#[derive(Debug, Clone)]
pub struct WatchHub {
    pub notifier: Notifier,
    /// Becomes true when the server starts shutting down.
    pub shutdown: watch::Receiver<bool>,
    pub tail: std::sync::Arc<reader::SharedTail>,
}

/// Wakes in-process readers of the log when a transaction that appended events
/// commits. Holds the highest sequence number known to be committed: by this
/// process, or by another replica as the [`follower`] last saw it; and since
/// when the follower has found the log's head held back, if it has.
#[derive(Debug, Clone)]
pub struct Notifier {
    sender: watch::Sender<i64>,
    held_since: std::sync::Arc<std::sync::Mutex<Option<std::time::Instant>>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            sender: watch::channel(0).0,
            held_since: Default::default(),
        }
    }
}

impl Notifier {
    /// The follower found the log's head held back (PostgreSQL: a
    /// transaction that took a position is still open); from the first time
    /// on, until [`Notifier::not_held_back`].
    pub fn held_back(&self) {
        if let Ok(mut since) = self.held_since.lock() {
            since.get_or_insert_with(std::time::Instant::now);
        }
    }

    /// The follower reached the log's head.
    pub fn not_held_back(&self) {
        if let Ok(mut since) = self.held_since.lock() {
            *since = None;
        }
    }

    /// How long the follower has found the log's head held back (zero when
    /// it reached it at its last poll).
    pub fn held_back_for(&self) -> std::time::Duration {
        self.held_since
            .lock()
            .ok()
            .and_then(|since| since.map(|since| since.elapsed()))
            .unwrap_or_default()
    }

    pub fn committed(&self, seq: i64) {
        self.sender.send_if_modified(|current| {
            if seq > *current {
                *current = seq;
                true
            } else {
                false
            }
        });
    }

    /// The highest position known to be committed, with every one below it.
    pub fn position(&self) -> i64 {
        *self.sender.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.sender.subscribe()
    }
}

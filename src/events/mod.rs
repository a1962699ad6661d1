//! The append-only event log (an outbox written in the transaction of each
//! change) and the in-process wake-up of its readers. Other replicas see new
//! events when the [`follower`] next reads the log.

pub mod follower;
pub mod reader;

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::domain::events::EventKind;
use crate::domain::time::Micros;
use crate::store;
use crate::values;

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
#[derive(Debug, Clone, FromQueryResult, Serialize, Deserialize)]
pub struct EventRow {
    pub seq: i64,
    pub id: String,
    /// An [`EventKind`] name; empty for audit entries that change nothing.
    pub kind: String,
    pub action: String,
    pub actor: String,
    pub on_behalf_of: String,
    pub organization_id: String,
    pub resource_id: String,
    pub request_id: String,
    pub audit: bool,
    pub payload: String,
    pub create_time: i64,
}

/// Appends events with consecutive sequence numbers. The counter row is taken
/// last, just before commit, so sequence order is commit order and a reader that
/// has seen `seq` never later finds a smaller one appear.
pub async fn append(
    conn: &impl ConnectionTrait,
    events: &[NewEvent],
) -> Result<Option<i64>, DbErr> {
    if events.is_empty() {
        return Ok(None);
    }
    let last = store::fetch_i64(
        conn,
        "UPDATE event_sequence SET last_seq = last_seq + $1 WHERE id = 1 RETURNING last_seq",
        values![events.len() as i64],
    )
    .await?;
    let first = last - events.len() as i64 + 1;
    for (offset, event) in events.iter().enumerate() {
        store::execute(
            conn,
            "INSERT INTO events (seq, id, kind, action, actor, on_behalf_of, organization_id, resource_id, request_id, audit, payload, create_time) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            values![
                first + offset as i64,
                crate::domain::ids::new_id(crate::domain::ids::EVENT),
                event.kind.map(EventKind::as_str).unwrap_or_default(),
                event.action.clone(),
                event.actor.clone(),
                event.on_behalf_of.clone(),
                event.organization_id.clone(),
                event.resource_id.clone(),
                event.request_id.clone(),
                event.audit,
                event.payload.to_string(),
                event.create_time,
            ],
        )
        .await?;
    }
    Ok(Some(last))
}

/// Wakes in-process readers of the log when a transaction that appended events
/// commits. Holds the highest sequence number known to be committed: by this
/// process, or by another replica as the [`follower`] last saw it.
#[derive(Debug, Clone)]
pub struct Notifier {
    sender: watch::Sender<i64>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            sender: watch::channel(0).0,
        }
    }
}

impl Notifier {
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

    pub fn subscribe(&self) -> watch::Receiver<i64> {
        self.sender.subscribe()
    }
}

//! Positions in the log on PostgreSQL, given after commit. A change writes
//! its events to `pending_events` in its own transaction and takes no lock
//! for them, so changes commit side by side. After its commit it asks this
//! process's sequencer for a pass and answers without waiting for it: in one
//! short transaction, holding the `event_sequence` row only for that
//! transaction, the pass moves every pending event it sees into `events` with
//! the next positions, in the order their changes committed (a change whose
//! events are seen committed after another's took its pending number later),
//! and raises the head. Readers read only `events` up to the head, so they
//! never see a gap fill in later, nor an event twice; a reader that must see
//! every change committed before it asked (a listing of the log, a watch that
//! starts from now) first waits for a pass of its own ([`caught_up`]). Passes
//! serve every change and reader that asked while the previous one ran; a
//! pass also runs every [`POLL_INTERVAL`] when events are pending, so the
//! events of a process that died between its commit and its pass are
//! sequenced by any replica.

use std::sync::Arc;

use sea_orm::{
    ConnectionTrait, DatabaseConnection, DbErr, EntityTrait, FromQueryResult, TransactionTrait,
    Value,
};
use tokio::sync::{mpsc, oneshot};

use super::follower::{ChangeListener, POLL_INTERVAL};
use super::reader::Change;
use super::{NewEvent, Notifier};
use crate::domain::events::EventKind;
use crate::store::entity::pending_events as pending;
use crate::store::{fetch_all, fetch_i64};

/// Pending events moved per statement.
const EVENTS_PER_PASS: i64 = 10_000;

/// The columns of a staged event, in the order [`stage`] binds them.
const STAGED_COLUMNS: &str = "id, kind, action, actor, on_behalf_of, organization_id, \
    resource_id, request_id, audit, payload, create_time";

/// Writes events without a position, in the change's transaction.
///
/// Raw SQL, written out here rather than by the query builder: every write
/// on PostgreSQL runs this statement, and its shape depends only on the
/// number of events.
pub async fn stage(conn: &impl ConnectionTrait, events: &[NewEvent]) -> Result<(), DbErr> {
    // A statement binds at most 65,535 values; a change with more events
    // (an organization deleted with its members) takes several.
    for chunk in events.chunks(STAGED_PER_STATEMENT) {
        let (sql, values) = staging(chunk);
        crate::store::execute(conn, &sql, values).await?;
    }
    Ok(())
}

/// Events staged per statement, at 11 values each.
const STAGED_PER_STATEMENT: usize = 1_000;

/// The statement that stages `events`, and its values: one row of
/// [`STAGED_COLUMNS`] each, its placeholders numbered as the values go in.
fn staging(events: &[NewEvent]) -> (String, Vec<Value>) {
    use std::fmt::Write;

    let mut sql = format!("INSERT INTO pending_events ({STAGED_COLUMNS}) VALUES ");
    let mut values = Vec::new();
    for (n, event) in events.iter().enumerate() {
        let row = [
            Value::from(crate::domain::ids::new_id(crate::domain::ids::EVENT)),
            Value::from(event.kind.map(EventKind::as_str).unwrap_or_default()),
            Value::from(event.action.as_str()),
            Value::from(event.actor.as_str()),
            Value::from(event.on_behalf_of.as_str()),
            Value::from(event.organization_id.as_str()),
            Value::from(event.resource_id.as_str()),
            Value::from(event.request_id.as_str()),
            Value::from(event.audit),
            Value::from(event.payload.to_string()),
            Value::from(event.create_time),
        ];
        sql.push_str(if n == 0 { "(" } else { ", (" });
        for (column, value) in row.into_iter().enumerate() {
            values.push(value);
            let separator = if column == 0 { "" } else { ", " };
            let _ = write!(sql, "{separator}${}", values.len());
        }
        sql.push(')');
    }
    (sql, values)
}

/// Raw SQL: a data-modifying CTE (move, number, raise the head in one
/// statement) that the query builder has no form for.
/// Moves pending events (at most `$2`) into the log after position `$1`,
/// numbered in pending order, and raises the head by as many.
const MOVE: &str = r#"
WITH moved AS (
    DELETE FROM pending_events
    WHERE pending_id IN (SELECT pending_id FROM pending_events ORDER BY pending_id LIMIT $2)
    RETURNING *
), numbered AS (
    SELECT $1 + row_number() OVER (ORDER BY pending_id) AS seq, moved.* FROM moved
), head AS (
    UPDATE event_sequence SET last_seq = $1 + (SELECT count(*) FROM moved) WHERE id = 1
)
INSERT INTO events (seq, id, kind, action, actor, on_behalf_of, organization_id, resource_id,
                    request_id, audit, payload, create_time)
SELECT seq, id, kind, action, actor, on_behalf_of, organization_id, resource_id, request_id,
       audit, payload, create_time
FROM numbered
RETURNING seq, kind, organization_id
"#;

#[derive(FromQueryResult)]
struct Moved {
    seq: i64,
    kind: String,
    organization_id: String,
}

/// One pass: the changes it sequenced, in order, and the head after it.
async fn pass(conn: &DatabaseConnection) -> Result<(Vec<Change>, i64), DbErr> {
    let txn = conn.begin().await?;
    // Held until this short transaction commits: passes run one at a time
    // across replicas; changes never wait for it.
    let last = fetch_i64(
        &txn,
        "SELECT last_seq FROM event_sequence WHERE id = 1 FOR UPDATE",
        vec![],
    )
    .await?;
    let mut moved: Vec<Moved> = fetch_all(
        &txn,
        MOVE,
        vec![Value::from(last), Value::from(EVENTS_PER_PASS)],
    )
    .await?;
    txn.commit().await?;
    moved.sort_by_key(|row| row.seq);
    let head = moved.last().map_or(last, |row| row.seq);
    let changes = moved
        .into_iter()
        .map(|row| Change {
            seq: row.seq,
            kind: EventKind::parse(&row.kind),
            organization_id: row.organization_id,
        })
        .collect();
    Ok((changes, head))
}

/// The payloads of the events of `kind` committed but not yet numbered: in
/// a snapshot, the changes it sees whose events will get positions after
/// the head it sees.
pub async fn pending_payloads(
    conn: &impl ConnectionTrait,
    kind: EventKind,
) -> Result<Vec<String>, DbErr> {
    use sea_orm::{ColumnTrait, QueryFilter, QueryOrder, QuerySelect};
    pending::Entity::find()
        .select_only()
        .column(pending::Column::Payload)
        .filter(pending::Column::Kind.eq(kind.as_str()))
        .order_by_asc(pending::Column::PendingId)
        .into_tuple()
        .all(conn)
        .await
}

/// Whether any event waits for its position. By the key's index: the table is
/// a queue, mostly dead rows between vacuums, which a scan of the table
/// would read through.
async fn pending(conn: &DatabaseConnection) -> Result<bool, DbErr> {
    Ok(fetch_i64(
        conn,
        "SELECT count(*) FROM (SELECT 1 FROM pending_events ORDER BY pending_id LIMIT 1) AS any_pending",
        vec![],
    )
    .await?
        > 0)
}

/// Asks this process's sequencer task for passes.
#[derive(Clone, Debug)]
pub struct Sequencer {
    sender: mpsc::Sender<oneshot::Sender<bool>>,
}

impl Sequencer {
    /// Starts the task; it ends when every [`Sequencer`] handle is gone.
    /// Sequenced changes go to `listener` and the head to `notifier`, as a
    /// change committed here should.
    pub fn spawn(
        conn: DatabaseConnection,
        notifier: Notifier,
        listener: Arc<dyn ChangeListener>,
    ) -> Sequencer {
        let (sender, mut requests) = mpsc::channel::<oneshot::Sender<bool>>(4096);
        tokio::spawn(async move {
            loop {
                let mut waiting = Vec::new();
                tokio::select! {
                    request = requests.recv() => match request {
                        Some(request) => waiting.push(request),
                        None => return,
                    },
                    _ = tokio::time::sleep(POLL_INTERVAL) => {}
                }
                while let Ok(request) = requests.try_recv() {
                    waiting.push(request);
                }
                // Nothing pending: every event committed before these
                // requests has its position already, and a pass (which locks
                // the position row) would move nothing.
                match pending(&conn).await {
                    Ok(false) => {
                        for request in waiting {
                            let _ = request.send(true);
                        }
                        continue;
                    }
                    Err(_) if waiting.is_empty() => continue,
                    _ => {}
                }
                let done = run_passes(&conn, &notifier, listener.as_ref()).await;
                for request in waiting {
                    let _ = request.send(done);
                }
            }
        });
        Sequencer { sender }
    }

    /// Asks for a pass without waiting for it: a change just committed
    /// events. A full queue has passes coming anyway.
    pub fn nudge(&self) {
        let (done, _) = oneshot::channel();
        let _ = self.sender.try_send(done);
    }

    /// Waits until every event committed before this call has its position:
    /// at once when none is pending, else after a pass that starts after
    /// this call. False when the pass failed (the events stay pending for a
    /// later pass).
    pub async fn sequenced(&self) -> bool {
        let (done, answer) = oneshot::channel();
        if self.sender.send(done).await.is_err() {
            return false;
        }
        answer.await.unwrap_or(false)
    }
}

/// Waits, on PostgreSQL, until every event committed before the call has its
/// position, so a read of the log that follows sees them: what a reader that
/// must see its own (or any earlier) writes calls first. On SQLite positions
/// are taken in the change's own transaction and there is nothing to wait for.
pub async fn caught_up(sequencer: Option<&Sequencer>) {
    if let Some(sequencer) = sequencer
        && !sequencer.sequenced().await
    {
        tracing::warn!("reading the log while committed events still wait for a pass");
    }
}

/// Passes until nothing seen is pending.
async fn run_passes(
    conn: &DatabaseConnection,
    notifier: &Notifier,
    listener: &dyn ChangeListener,
) -> bool {
    loop {
        match pass(conn).await {
            Ok((changes, head)) => {
                let full = changes.len() as i64 >= EVENTS_PER_PASS;
                if !changes.is_empty() {
                    listener.changed(&changes);
                }
                notifier.committed(head);
                if !full {
                    return true;
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot sequence pending events; retrying later");
                return false;
            }
        }
    }
}

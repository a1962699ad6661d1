//! Reading the log: its head, the events of some kinds after a position (with
//! a tail shared by the readers of one process), the audit trail, and the
//! changes that the caches follow.

use sea_orm::{ConnectionTrait, DbErr};

use super::EventRow;
use crate::domain::events::{AuditEvent, AuditFilter, EventKind};
use crate::store::{self, Sql};

/// The columns of an [`EventRow`].
const EVENT_COLUMNS: &str = "seq, id, kind, action, actor, on_behalf_of, organization_id, resource_id, request_id, audit, payload, create_time";

/// The highest committed sequence number. Every event up to it is committed
/// and visible to a later read: sequence numbers are taken in commit order.
pub async fn head(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    store::fetch_i64(
        conn,
        "SELECT last_seq FROM event_sequence WHERE id = 1",
        vec![],
    )
    .await
}

/// Events of one of `kinds` with a sequence number in `(after, up_to]`, in
/// order, at most `limit`.
pub async fn read_kinds(
    conn: &impl ConnectionTrait,
    kinds: &[EventKind],
    after: i64,
    up_to: i64,
    limit: u64,
) -> Result<Vec<EventRow>, DbErr> {
    let mut sql = Sql::new(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE kind IN ("
    ));
    let placeholders: Vec<String> = kinds.iter().map(|kind| sql.bind(kind.as_str())).collect();
    sql.push(&placeholders.join(", "));
    let a = sql.bind(after);
    let u = sql.bind(up_to);
    let l = sql.bind(limit as i64);
    sql.push(&format!(
        ") AND seq > {a} AND seq <= {u} ORDER BY seq LIMIT {l}"
    ));
    store::fetch_all(conn, &sql.text, sql.values).await
}

/// Events most recently read, kept for the next reader.
const TAIL_CAPACITY: usize = 4096;

/// The recent tail of the log, filtered to some kinds, shared by the
/// readers of one process: when many watches wake for the same commit, one
/// of them reads the log and the others are served from memory. It covers a
/// contiguous range of sequence numbers `(from, to]` and holds every event of
/// those kinds in it; a reader further back than the tail reads the log
/// itself.
#[derive(Debug)]
pub struct SharedTail {
    kinds: &'static [EventKind],
    tail: tokio::sync::Mutex<Option<Tail>>,
}

#[derive(Debug)]
struct Tail {
    from: i64,
    to: i64,
    events: std::collections::VecDeque<EventRow>,
}

impl SharedTail {
    pub fn new(kinds: &'static [EventKind]) -> Self {
        SharedTail {
            kinds,
            tail: tokio::sync::Mutex::new(None),
        }
    }

    /// The events in `(after, head]`, at most `limit`, and the position they
    /// reach: the last one's sequence number when `limit` cut them short,
    /// else `head`. Every event up to `head` must be committed.
    pub async fn read(
        &self,
        conn: &impl ConnectionTrait,
        after: i64,
        head: i64,
        limit: usize,
    ) -> Result<(Vec<EventRow>, i64), DbErr> {
        let mut guard = self.tail.lock().await;
        let tail = guard.get_or_insert_with(|| Tail {
            from: after,
            to: after,
            events: Default::default(),
        });
        if after > tail.to {
            // The tail is behind every reader that matters now: start afresh.
            *tail = Tail {
                from: after,
                to: after,
                events: Default::default(),
            };
        }
        if after < tail.from {
            drop(guard);
            let events = read_kinds(conn, self.kinds, after, head, limit as u64).await?;
            return Ok(reached(events, head, limit));
        }
        if head > tail.to {
            // One reader fills the tail while the others wait for it.
            let fresh = read_kinds(conn, self.kinds, tail.to, head, TAIL_CAPACITY as u64).await?;
            tail.to = match fresh.last() {
                Some(last) if fresh.len() >= TAIL_CAPACITY => last.seq,
                _ => head,
            };
            tail.events.extend(fresh);
            while tail.events.len() > TAIL_CAPACITY {
                if let Some(dropped) = tail.events.pop_front() {
                    tail.from = dropped.seq;
                }
            }
            if after < tail.from {
                drop(guard);
                let events = read_kinds(conn, self.kinds, after, head, limit as u64).await?;
                return Ok(reached(events, head, limit));
            }
        }
        let end = head.min(tail.to);
        let events: Vec<EventRow> = tail
            .events
            .iter()
            .filter(|event| event.seq > after && event.seq <= end)
            .take(limit)
            .cloned()
            .collect();
        Ok(reached(events, end, limit))
    }
}

fn reached(events: Vec<EventRow>, head: i64, limit: usize) -> (Vec<EventRow>, i64) {
    let position = match events.last() {
        Some(last) if events.len() >= limit => last.seq,
        _ => head,
    };
    (events, position)
}

fn audit_filter_sql(sql: &mut Sql, filter: &AuditFilter) {
    if let Some(organization_id) = &filter.organization_id {
        let p = sql.bind(organization_id.as_str());
        sql.push(&format!(" AND organization_id = {p}"));
    }
    if let Some(actor) = &filter.actor {
        let p = sql.bind(actor.clone());
        sql.push(&format!(" AND actor = {p}"));
    }
}

/// Audit events, newest first, before the sequence number `before`
/// (exclusive), at most `limit`.
pub async fn audit_page(
    conn: &impl ConnectionTrait,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: u64,
) -> Result<Vec<(i64, AuditEvent)>, DbErr> {
    let mut sql = Sql::new(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE audit = TRUE"
    ));
    audit_filter_sql(&mut sql, filter);
    if let Some(seq) = before {
        let p = sql.bind(seq);
        sql.push(&format!(" AND seq < {p}"));
    }
    let l = sql.bind(limit as i64);
    sql.push(&format!(" ORDER BY seq DESC LIMIT {l}"));
    let rows: Vec<EventRow> = store::fetch_all(conn, &sql.text, sql.values).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.seq,
                AuditEvent {
                    id: row.id,
                    action: row.action,
                    actor: row.actor,
                    on_behalf_of: row.on_behalf_of,
                    organization_id: row.organization_id,
                    resource_id: row.resource_id,
                    request_id: row.request_id,
                    create_time: row.create_time,
                },
            )
        })
        .collect())
}

/// How many audit events match `filter`.
pub async fn count_audit(conn: &impl ConnectionTrait, filter: &AuditFilter) -> Result<i64, DbErr> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM events WHERE audit = TRUE");
    audit_filter_sql(&mut sql, filter);
    store::fetch_i64(conn, &sql.text, sql.values).await
}

/// What a committed change touched: its position, kind and organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    /// `None` for audit entries that change nothing.
    pub kind: Option<EventKind>,
    /// Empty for changes outside any organization.
    pub organization_id: String,
}

#[derive(sea_orm::FromQueryResult)]
struct ChangeRow {
    seq: i64,
    kind: String,
    organization_id: String,
}

/// The events in `(after, up_to]`, oldest first, at most `limit`: what the
/// caches of this process must forget.
pub async fn changes(
    conn: &impl ConnectionTrait,
    after: i64,
    up_to: i64,
    limit: u64,
) -> Result<Vec<Change>, DbErr> {
    let rows: Vec<ChangeRow> = store::fetch_all(
        conn,
        "SELECT seq, kind, organization_id FROM events WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
        crate::values![after, up_to, limit as i64],
    )
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| Change {
            seq: row.seq,
            kind: EventKind::parse(&row.kind),
            organization_id: row.organization_id,
        })
        .collect())
}

/// The first event after `seq` still in the log: its sequence number and
/// when it was recorded.
pub async fn first_after(
    conn: &impl ConnectionTrait,
    seq: i64,
) -> Result<Option<(i64, i64)>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct First {
        seq: i64,
        create_time: i64,
    }
    let row: Option<First> = store::fetch_optional(
        conn,
        "SELECT seq, create_time FROM events WHERE seq > $1 ORDER BY seq LIMIT 1",
        crate::values![seq],
    )
    .await?;
    Ok(row.map(|row| (row.seq, row.create_time)))
}

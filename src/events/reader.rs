//! Reading the log: its head, the events of some kinds after a position (with
//! a tail shared by the readers of one process), the audit trail, and the
//! changes that the caches follow.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, DbBackend, DbErr, DerivePartialModel,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
};

use super::EventRow;
use crate::domain::events::{AuditEvent, AuditFilter, EventFilter, EventKind};
use crate::store::entity::{event_sequence, events as log};
use crate::store::query;

/// The head of the log: a position up to which every event is committed
/// and visible to any read that starts after this returns, and below which
/// none can appear later. It covers every change committed before the call.
/// On SQLite the last position given (positions are taken in commit order);
/// on PostgreSQL the horizon ([`super::horizon::horizon`]), which waits for
/// the transactions in flight. Not in a snapshot transaction: the horizon
/// needs fresh reads, and a snapshot must begin after it.
pub async fn head(conn: &DatabaseConnection) -> Result<i64, DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        return super::horizon::horizon(conn).await;
    }
    Ok(event_sequence::Entity::find_by_id(1)
        .one(conn)
        .await?
        .map_or(0, |row| row.last_seq))
}

/// The events `filter` selects: only events with a kind (entries recorded
/// before kinds existed have none and are never read here).
fn matching(filter: &EventFilter) -> Select<log::Entity> {
    let kinds: &[EventKind] = if filter.kinds.is_empty() {
        EventKind::ALL
    } else {
        &filter.kinds
    };
    log::Entity::find()
        .filter(log::Column::Kind.is_in(kinds.iter().map(|kind| kind.as_str())))
        .apply_if(filter.organization_id.as_deref(), |select, id| {
            select.filter(log::Column::OrganizationId.eq(id))
        })
}

/// Whether `filter` selects the stored event `row`.
pub fn matches(filter: &EventFilter, row: &EventRow) -> bool {
    let Some(kind) = EventKind::parse(&row.kind) else {
        return false;
    };
    (filter.kinds.is_empty() || filter.kinds.contains(&kind))
        && filter
            .organization_id
            .as_deref()
            .is_none_or(|id| row.organization_id == id)
}

/// Events `filter` selects with a sequence number in `(after, up_to]`, in
/// order, at most `limit`.
pub async fn read_matching(
    conn: &impl ConnectionTrait,
    filter: &EventFilter,
    after: i64,
    up_to: i64,
    limit: u64,
) -> Result<Vec<EventRow>, DbErr> {
    matching(filter)
        .filter(log::Column::Seq.gt(after))
        .filter(log::Column::Seq.lte(up_to))
        .order_by_asc(log::Column::Seq)
        .limit(limit)
        .all(conn)
        .await
}

/// How many events `filter` selects.
pub async fn count_matching(
    conn: &impl ConnectionTrait,
    filter: &EventFilter,
) -> Result<i64, DbErr> {
    query::count(conn, matching(filter)).await
}

/// Events most recently read, kept for the next reader.
const TAIL_CAPACITY: usize = 4096;

/// The recent tail of the log, shared by every reader of one process (the
/// billing watches and the event watches, whatever their filters): when many
/// watches wake for the same commit, one of them reads the log and the others
/// are served from memory. It covers a contiguous range of sequence numbers
/// `(from, to]` and holds every event with a kind in it; each reader filters
/// it. A reader further back than the tail reads the log itself, with its
/// own filter.
#[derive(Debug, Default)]
pub struct SharedTail {
    tail: tokio::sync::Mutex<Option<Tail>>,
}

#[derive(Debug)]
struct Tail {
    from: i64,
    to: i64,
    events: std::collections::VecDeque<EventRow>,
}

impl SharedTail {
    /// The events `filter` selects in `(after, head]`, at most `limit`, and
    /// the position they reach: the last one's sequence number when `limit`
    /// cut them short, else `head`. Every event up to `head` must be
    /// committed.
    pub async fn read(
        &self,
        conn: &impl ConnectionTrait,
        filter: &EventFilter,
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
            let events = read_matching(conn, filter, after, head, limit as u64).await?;
            return Ok(reached(events, head, limit));
        }
        if head > tail.to {
            // One reader fills the tail while the others wait for it.
            let every = EventFilter::default();
            let fresh = read_matching(conn, &every, tail.to, head, TAIL_CAPACITY as u64).await?;
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
                let events = read_matching(conn, filter, after, head, limit as u64).await?;
                return Ok(reached(events, head, limit));
            }
        }
        let end = head.min(tail.to);
        let events: Vec<EventRow> = tail
            .events
            .iter()
            .filter(|event| event.seq > after && event.seq <= end && matches(filter, event))
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

/// The audit entries `filter` selects.
fn audit_entries(filter: &AuditFilter) -> Select<log::Entity> {
    log::Entity::find()
        .filter(query::eq_literal(log::Column::Audit, true))
        .apply_if(filter.organization_id.as_deref(), |select, id| {
            select.filter(log::Column::OrganizationId.eq(id))
        })
        .apply_if(filter.actor.as_deref(), |select, actor| {
            select.filter(log::Column::Actor.eq(actor))
        })
}

/// Audit events, newest first, below `end`: before the sequence number of
/// a page's cursor, or up to the head for a first page (an event above it
/// may still have a smaller one commit after it). At most `limit`.
pub async fn audit_page(
    conn: &impl ConnectionTrait,
    filter: &AuditFilter,
    end: AuditEnd,
    limit: u64,
) -> Result<Vec<(i64, AuditEvent)>, DbErr> {
    let rows = audit_entries(filter)
        .filter(match end {
            AuditEnd::Before(seq) => log::Column::Seq.lt(seq),
            AuditEnd::Head(seq) => log::Column::Seq.lte(seq),
        })
        .order_by_desc(log::Column::Seq)
        .limit(limit)
        .all(conn)
        .await?;
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

/// Where a page of the audit trail ends, newest first.
#[derive(Debug, Clone, Copy)]
pub enum AuditEnd {
    /// Below this sequence number: the cursor of the page before.
    Before(i64),
    /// Up to the head of the log: a first page.
    Head(i64),
}

/// How many audit events match `filter`.
pub async fn count_audit(conn: &impl ConnectionTrait, filter: &AuditFilter) -> Result<i64, DbErr> {
    query::count(conn, audit_entries(filter)).await
}

/// What a committed change touched: its position, kind and organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// 0 for a change this process committed on PostgreSQL (the positions
    /// its events took are not read back).
    pub seq: i64,
    /// `None` for audit entries that change nothing.
    pub kind: Option<EventKind>,
    /// Empty for changes outside any organization.
    pub organization_id: String,
}

#[derive(DerivePartialModel)]
#[sea_orm(entity = "log::Entity")]
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
    let rows: Vec<ChangeRow> = log::Entity::find()
        .filter(log::Column::Seq.gt(after))
        .filter(log::Column::Seq.lte(up_to))
        .order_by_asc(log::Column::Seq)
        .limit(limit)
        .into_partial_model()
        .all(conn)
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

#[derive(DerivePartialModel)]
#[sea_orm(entity = "log::Entity")]
struct Position {
    seq: i64,
    create_time: i64,
}

/// The first event after `seq` still in the log: its sequence number and
/// when it was recorded.
pub async fn first_after(
    conn: &impl ConnectionTrait,
    seq: i64,
) -> Result<Option<(i64, i64)>, DbErr> {
    let first: Option<Position> = log::Entity::find()
        .filter(log::Column::Seq.gt(seq))
        .order_by_asc(log::Column::Seq)
        .into_partial_model()
        .one(conn)
        .await?;
    Ok(first.map(|row| (row.seq, row.create_time)))
}

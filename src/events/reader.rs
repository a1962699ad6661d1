//! Reading the log: its head, the events after a position, and the poller
//! that brings other replicas' commits to this process's readers.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbErr};
use tokio::sync::watch;

use super::{EventRow, Notifier};
use crate::store::{self, Db, Sql};

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

/// Events with one of `actions` and a sequence number in `(after, up_to]`,
/// in order, at most `limit`.
pub async fn read_actions(
    conn: &impl ConnectionTrait,
    actions: &[&str],
    after: i64,
    up_to: i64,
    limit: u64,
) -> Result<Vec<EventRow>, DbErr> {
    let mut sql = Sql::new(&format!(
        "SELECT {EVENT_COLUMNS} FROM events WHERE action IN ("
    ));
    let placeholders: Vec<String> = actions
        .iter()
        .map(|action| sql.bind(action.to_string()))
        .collect();
    sql.push(&placeholders.join(", "));
    let a = sql.bind(after);
    let u = sql.bind(up_to);
    let l = sql.bind(limit as i64);
    sql.push(&format!(
        ") AND seq > {a} AND seq <= {u} ORDER BY seq LIMIT {l}"
    ));
    store::fetch_all(conn, &sql.text, sql.values).await
}

/// Polls the head of the log every `every` and reports it to `notifier`, so
/// in-process readers wake for events committed by other replicas too. One
/// poller serves every reader of the process; it ends on shutdown.
pub fn spawn_head_poller(
    db: Db,
    notifier: Notifier,
    mut shutdown: watch::Receiver<bool>,
    every: Duration,
) {
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            if *shutdown.borrow() {
                return;
            }
            tokio::select! {
                _ = ticker.tick() => {}
                changed = shutdown.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    continue;
                }
            }
            match head(db.conn()).await {
                Ok(seq) => notifier.committed(seq),
                Err(err) => tracing::debug!(error = %err, "log head poll failed"),
            }
        }
    });
}

/// Events most recently read, kept for the next reader.
const TAIL_CAPACITY: usize = 4096;

/// The recent tail of the log, filtered to some actions, shared by the
/// readers of one process: when many watches wake for the same commit, one
/// of them reads the log and the others are served from memory. It covers a
/// contiguous range of sequence numbers `(from, to]` and holds every event of
/// those actions in it; a reader further back than the tail reads the log
/// itself.
#[derive(Debug)]
pub struct SharedTail {
    actions: &'static [&'static str],
    tail: tokio::sync::Mutex<Option<Tail>>,
}

#[derive(Debug)]
struct Tail {
    from: i64,
    to: i64,
    events: std::collections::VecDeque<EventRow>,
}

impl SharedTail {
    pub fn new(actions: &'static [&'static str]) -> Self {
        SharedTail {
            actions,
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
            let events = read_actions(conn, self.actions, after, head, limit as u64).await?;
            return Ok(reached(events, head, limit));
        }
        if head > tail.to {
            // One reader fills the tail while the others wait for it.
            let fresh =
                read_actions(conn, self.actions, tail.to, head, TAIL_CAPACITY as u64).await?;
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
                let events = read_actions(conn, self.actions, after, head, limit as u64).await?;
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

/// The columns of an [`EventRow`].
const EVENT_COLUMNS: &str = "seq, id, action, actor, on_behalf_of, organization_id, resource_id, request_id, audit, payload, create_time";

/// Filters of the audit trail.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub organization_id: Option<String>,
    pub actor: Option<String>,
}

fn audit_filter_sql(sql: &mut Sql, filter: &AuditFilter) {
    if let Some(organization_id) = &filter.organization_id {
        let p = sql.bind(organization_id.clone());
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
) -> Result<Vec<EventRow>, DbErr> {
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
    store::fetch_all(conn, &sql.text, sql.values).await
}

/// How many audit events match `filter`.
pub async fn count_audit(conn: &impl ConnectionTrait, filter: &AuditFilter) -> Result<i64, DbErr> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM events WHERE audit = TRUE");
    audit_filter_sql(&mut sql, filter);
    store::fetch_i64(conn, &sql.text, sql.values).await
}

/// What a committed change touched: its position, action and organization.
#[derive(Debug, Clone, sea_orm::FromQueryResult)]
pub struct Change {
    pub seq: i64,
    pub action: String,
    pub organization_id: String,
}

/// The audit events after `after`, oldest first, at most `limit`: what other
/// replicas changed, for cache invalidation.
pub async fn changes_after(
    conn: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<Change>, DbErr> {
    store::fetch_all(
        conn,
        "SELECT seq, action, organization_id FROM events WHERE seq > $1 AND audit = TRUE ORDER BY seq LIMIT $2",
        crate::values![after, limit as i64],
    )
    .await
}

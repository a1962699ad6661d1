//! Positions in the log on PostgreSQL, taken in the change's own
//! transaction without a lock held across its commit.
//!
//! A change writes its events as its last statement, once, each taking the
//! next value of the `event_positions` sequence (`event_position()`, the
//! default of `events.seq`). The values are taken after every row lock the
//! change holds, so of two changes that touched one row the one that
//! committed later has the larger positions, and changes commit side by
//! side, on any number of replicas.
//!
//! A position is taken before its commit, though, so a smaller one can
//! commit after a larger one. Readers therefore read the log only up to its
//! *horizon* ([`horizon`]): the sequence's last value, once every
//! transaction that was in flight when it was read has ended (as listed by
//! `pg_current_snapshot()`, which costs next to nothing; a wait that lingers
//! narrows to the transactions of this database, from `pg_stat_activity`).
//! `event_position()` gives its transaction an id before it takes a value,
//! so a change that took a position up to that value is among those
//! transactions or had ended; after they end, every position up to the
//! horizon is committed and visible (or was rolled back, a gap that no
//! reader waits for), and no smaller one can appear later. Readers never see
//! a gap fill in, nor an event twice.
//!
//! A reader that must see every change committed before it asked (a listing
//! of the log, a watch that starts from now) finds a horizon itself
//! ([`crate::events::reader::head`]), which covers them. Each process also has
//! one [`Horizon`] task: a change that committed events nudges it and
//! answers without waiting; the task finds the horizon and wakes the
//! watches of the process ([`Notifier`]).

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, DbErr, FromQueryResult, Value};
use tokio::sync::mpsc;

use super::{NewEvent, Notifier};
use crate::domain::events::EventKind;
use crate::store::{Sql, fetch_all, fetch_i64};

/// The columns an event is written with; `seq` takes its default.
const COLUMNS: &str = "id, kind, action, actor, on_behalf_of, organization_id, \
    resource_id, request_id, audit, payload, create_time";

/// Writes events at the next positions, in the change's transaction: its
/// last statement, after every row lock the change takes.
///
/// Raw SQL, written out here rather than by the query builder: every write
/// on PostgreSQL runs this statement, and its shape depends only on the
/// number of events.
pub async fn append(conn: &impl ConnectionTrait, events: &[NewEvent]) -> Result<(), DbErr> {
    // A statement binds at most 65,535 values; a change with more events
    // (an organization deleted with its members) takes several.
    for chunk in events.chunks(EVENTS_PER_STATEMENT) {
        let (sql, values) = insert(chunk);
        crate::store::execute(conn, &sql, values).await?;
    }
    Ok(())
}

/// Events written per statement, at 11 values each.
const EVENTS_PER_STATEMENT: usize = 1_000;

/// The statement that writes `events`, and its values: one row of
/// [`COLUMNS`] each, its placeholders numbered as the values go in. The rows
/// take their positions in the order they are listed.
fn insert(events: &[NewEvent]) -> (String, Vec<Value>) {
    let mut sql = Sql::new(
        DbBackend::Postgres,
        &format!("INSERT INTO events ({COLUMNS}) VALUES "),
    );
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
        sql.push(if n == 0 { "(" } else { ", (" });
        for (column, value) in row.into_iter().enumerate() {
            sql.push(if column == 0 { "" } else { ", " }).bind(value);
        }
        sql.push(")");
    }
    sql.into_parts()
}

/// The last value the sequence gave out (0 before the first).
const LAST_GIVEN: &str =
    "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM event_positions";

/// The transactions in flight, in the whole cluster (cheap: a snapshot's
/// list of them). Read after [`LAST_GIVEN`], it holds every transaction that
/// took a position up to it and has not ended.
const SNAPSHOT: &str = "SELECT pg_current_snapshot()::text AS snapshot";

/// The transactions of this database in flight (their ids, comma-separated):
/// what the wait narrows to when it lingers, so that a long transaction of
/// another database in the cluster holds nothing back. Costs more than
/// [`SNAPSHOT`] (every backend's status is copied), so it is read only then.
const OURS: &str = "SELECT string_agg(backend_xid::text, ',') AS xids FROM pg_stat_activity \
    WHERE datname = current_database() AND backend_xid IS NOT NULL";

/// The sessions whose transactions hold the horizon back, for the warning.
const HOLDING_BACK: &str = "SELECT string_agg(format('%s (%s since %s)', pid, state, xact_start), \
    ', ') AS xids FROM pg_stat_activity \
    WHERE datname = current_database() AND backend_xid::text = ANY(string_to_array($1, ','))";

#[derive(FromQueryResult)]
struct Xids {
    xids: Option<String>,
}

#[derive(FromQueryResult)]
struct Snapshot {
    snapshot: String,
}

/// The first pause between looks at the transactions in flight; it doubles
/// up to [`LONGEST_PAUSE`]. Changes commit within milliseconds.
const FIRST_PAUSE: Duration = Duration::from_millis(1);
const LONGEST_PAUSE: Duration = Duration::from_millis(20);

/// A wait that lasts this long narrows to the transactions of this database.
const NARROW_AFTER: Duration = Duration::from_millis(100);

/// After this long, a horizon still held back is logged with the sessions
/// that hold it (a transaction left open in the database holds back every
/// watch).
const SLOW_HORIZON: Duration = Duration::from_secs(5);

/// The log's horizon: a position up to which every event is committed and
/// visible to any snapshot taken after this returns, and below which none
/// can appear later. Waits for the transactions in flight when it starts,
/// not for later ones.
pub async fn horizon(conn: &DatabaseConnection) -> Result<i64, DbErr> {
    match reach(conn, None).await? {
        Reach::Horizon(position) | Reach::HeldBelow(position) => Ok(position),
    }
}

/// How far the log can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reach {
    /// The horizon: read up to it.
    Horizon(i64),
    /// Transactions that may hold positions up to this one were still in
    /// flight when the wait ended: events up to it may be read to learn what
    /// changed, but a smaller one may still commit.
    HeldBelow(i64),
}

/// The transaction ids a snapshot (`xmin:xmax:xip,…`) lists in flight.
fn in_flight(snapshot: &str) -> Vec<u64> {
    snapshot
        .splitn(3, ':')
        .nth(2)
        .unwrap_or_default()
        .split(',')
        .filter_map(|xid| xid.trim().parse().ok())
        .collect()
}

async fn snapshot(conn: &DatabaseConnection) -> Result<Vec<u64>, DbErr> {
    let rows = fetch_all::<Snapshot>(conn, SNAPSHOT, vec![]).await?;
    Ok(rows
        .first()
        .map(|row| in_flight(&row.snapshot))
        .unwrap_or_default())
}

/// The transactions of this database in flight, by their 32-bit ids (what
/// `pg_stat_activity` shows; a snapshot lists 64-bit ones, whose low 32 bits
/// these are).
async fn ours(conn: &DatabaseConnection) -> Result<Vec<u32>, DbErr> {
    let rows = fetch_all::<Xids>(conn, OURS, vec![]).await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|row| row.xids)
        .unwrap_or_default()
        .split(',')
        .filter_map(|xid| xid.trim().parse().ok())
        .collect())
}

/// The low 32 bits of a 64-bit transaction id, as `pg_stat_activity` shows it.
fn short(xid: u64) -> u32 {
    (xid & u64::from(u32::MAX)) as u32
}

/// The log's horizon ([`horizon`]), waiting at most `within` (`None`:
/// as long as it takes) for the transactions in flight.
pub async fn reach(conn: &DatabaseConnection, within: Option<Duration>) -> Result<Reach, DbErr> {
    let last = fetch_i64(conn, LAST_GIVEN, vec![]).await?;
    let mut waiting = snapshot(conn).await?;
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut narrowed = false;
    let mut warned = false;
    loop {
        if waiting.is_empty() {
            return Ok(Reach::Horizon(last));
        }
        if within.is_some_and(|within| started.elapsed() >= within) {
            return Ok(Reach::HeldBelow(last));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
        let now = snapshot(conn).await?;
        waiting.retain(|xid| now.contains(xid));
        if !narrowed && !waiting.is_empty() && started.elapsed() >= NARROW_AFTER {
            narrowed = true;
            let ours = ours(conn).await?;
            waiting.retain(|xid| ours.contains(&short(*xid)));
        }
        if !warned && !waiting.is_empty() && started.elapsed() >= SLOW_HORIZON {
            warned = true;
            let ids: Vec<String> = waiting.iter().map(|xid| short(*xid).to_string()).collect();
            let holders = fetch_all::<Xids>(conn, HOLDING_BACK, vec![Value::from(ids.join(","))])
                .await?
                .into_iter()
                .next()
                .and_then(|row| row.xids)
                .unwrap_or_default();
            tracing::warn!(
                position = last,
                sessions = %holders,
                "open transactions hold back the event log's horizon; watches wait for them"
            );
        }
    }
}

/// The payloads of the events of `kind` after position `after`, in order,
/// as the snapshot of `conn` sees them.
pub async fn payloads_after(
    conn: &impl ConnectionTrait,
    kind: EventKind,
    after: i64,
) -> Result<Vec<String>, DbErr> {
    use crate::store::entity::events as log;
    use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
    log::Entity::find()
        .select_only()
        .column(log::Column::Payload)
        .filter(log::Column::Seq.gt(after))
        .filter(log::Column::Kind.eq(kind.as_str()))
        .order_by_asc(log::Column::Seq)
        .into_tuple()
        .all(conn)
        .await
}

/// Asks this process's horizon task to move the horizon on.
#[derive(Clone, Debug)]
pub struct Horizon {
    /// Room for one nudge: those that arrive while one waits are served by
    /// the same search.
    nudges: mpsc::Sender<()>,
}

impl Horizon {
    /// Starts the task; it ends when every [`Horizon`] handle is gone. Each
    /// horizon it finds goes to `notifier`, waking the watches.
    pub fn spawn(conn: DatabaseConnection, notifier: Notifier) -> Horizon {
        let (nudges, mut nudged) = mpsc::channel(1);
        tokio::spawn(async move {
            while nudged.recv().await.is_some() {
                match horizon(&conn).await {
                    Ok(position) => notifier.committed(position),
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot find the event log's horizon");
                    }
                }
            }
        });
        Horizon { nudges }
    }

    /// Asks for a horizon without waiting for it: a change just committed
    /// events. A nudge already waiting covers this one.
    pub fn nudge(&self) {
        let _ = self.nudges.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_lists_its_transactions_in_flight() {
        assert_eq!(in_flight("100:104:100,102"), vec![100, 102]);
        assert_eq!(in_flight("100:100:"), Vec::<u64>::new());
        assert_eq!(short((7 << 32) + 5), 5);
    }
}

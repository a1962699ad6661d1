//! Positions in the log on PostgreSQL, taken in the change's own
//! transaction without a lock held across its commit.
//!
//! A change writes its events as its last statement, once, each taking the
//! next value of the `event_positions` sequence (`event_position()`, the
//! default of `events.seq`); a new member's event may instead ride in the
//! statement that adds the member, when nothing after it takes a lock
//! ([`crate::store::repo::member_writes::StatementEvents`]). The values are
//! taken after every row lock the change holds, so of two changes that
//! touched one row the one that committed later has the larger positions,
//! and changes commit side by side, on any number of replicas.
//!
//! A position is taken before its commit, though, so a smaller one can
//! commit after a larger one. Readers therefore read the log only up to its
//! *horizon* ([`horizon`]): the sequence's last value, once every
//! transaction that had an id when it was read has ended. Those are the
//! transactions below the transaction counter read just after; a snapshot
//! (`pg_current_snapshot()`, which costs next to nothing) tells that they
//! have ended once its `xmax` has reached that counter and it lists none of
//! them in flight. (Its list alone is not enough: it holds only the
//! transactions below `xmax`, one past the newest that ended, and a newer
//! one in flight is not in it.) A wait that lingers narrows to the
//! transactions of this database, from `pg_stat_activity`.
//! `event_position()` gives its transaction an id before it takes a value,
//! so a change that took a position up to that value is among those
//! transactions; after they end, every position up to the
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
pub(crate) const COLUMNS: &str = "id, kind, action, actor, on_behalf_of, organization_id, \
    resource_id, request_id, audit, payload, create_time";

/// Where the payload stands among [`COLUMNS`].
pub(crate) const PAYLOAD_COLUMN: usize = 9;

/// The values `event` is written with, one for each of [`COLUMNS`], a new
/// event id first.
pub(crate) fn row(event: &NewEvent) -> [Value; 11] {
    [
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
    ]
}

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
        sql.push(if n == 0 { "(" } else { ", (" });
        for (column, value) in row(event).into_iter().enumerate() {
            sql.push(if column == 0 { "" } else { ", " }).bind(value);
        }
        sql.push(")");
    }
    sql.into_parts()
}

/// The last value the sequence gave out (0 before the first).
const LAST_GIVEN: &str =
    "SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM event_positions";

/// The transactions in flight in the whole cluster and how far the
/// transaction counter is ahead of them (cheap: a snapshot's list and one
/// counter read). A snapshot lists only the transactions in flight below its
/// `xmax`, which is one past the newest transaction that *ended*: a
/// transaction newer than that one is in flight but not listed. `ahead`
/// (the next transaction id less `xmax`, read after the snapshot) bounds
/// those: every transaction that took a position up to [`LAST_GIVEN`], read
/// before, has an id below `xmax + ahead`.
const SNAPSHOT: &str = "SELECT pg_current_snapshot()::text AS snapshot, \
    age(xid(pg_snapshot_xmax(pg_current_snapshot())))::bigint AS ahead";

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
struct SnapshotRow {
    snapshot: String,
    ahead: i64,
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

/// A snapshot of the transactions in flight (`xmin:xmax:xip,…`): every
/// transaction below `xmax` that is not listed has ended; of those from
/// `xmax` on it tells nothing.
#[derive(Debug)]
struct Snapshot {
    xmax: u64,
    in_flight: Vec<u64>,
}

impl Snapshot {
    /// `None` for text that is not a snapshot: nothing can be said to have
    /// ended then.
    fn parse(text: &str) -> Option<Snapshot> {
        let mut parts = text.splitn(3, ':');
        let _xmin = parts.next()?;
        let xmax = parts.next()?.trim().parse().ok()?;
        let in_flight = parts
            .next()?
            .split(',')
            .filter(|xid| !xid.trim().is_empty())
            .map(|xid| xid.trim().parse().ok())
            .collect::<Option<_>>()?;
        Some(Snapshot { xmax, in_flight })
    }

    /// Whether the transaction `xid` had ended when the snapshot was taken.
    fn ended(&self, xid: u64) -> bool {
        xid < self.xmax && !self.in_flight.contains(&xid)
    }

    /// Whether every transaction below `next` had ended.
    fn ended_below(&self, next: u64) -> bool {
        self.xmax >= next && self.in_flight.iter().all(|xid| *xid >= next)
    }
}

/// The snapshot of the transactions in flight, and the id the next
/// transaction will take (read after the snapshot).
async fn snapshot(conn: &DatabaseConnection) -> Result<(Snapshot, u64), DbErr> {
    let rows = fetch_all::<SnapshotRow>(conn, SNAPSHOT, vec![]).await?;
    let row = rows
        .into_iter()
        .next()
        .ok_or_else(|| DbErr::Custom("pg_current_snapshot() returned no row".into()))?;
    let snapshot = Snapshot::parse(&row.snapshot).ok_or_else(|| {
        DbErr::Custom(format!(
            "pg_current_snapshot() returned {:?}, not a snapshot",
            row.snapshot
        ))
    })?;
    let next = snapshot
        .xmax
        .saturating_add(u64::try_from(row.ahead).unwrap_or(0));
    Ok((snapshot, next))
}

/// The transactions of this database in flight that began before `next`,
/// by their 64-bit ids. `pg_stat_activity` shows the low 32 bits; each is
/// below `next` by less than 2^31, so its high bits are `next`'s, less one
/// wrap when its low bits are above `next`'s. Ids from `next` on (later
/// transactions) are left out.
async fn ours(conn: &DatabaseConnection, next: u64) -> Result<Vec<u64>, DbErr> {
    let rows = fetch_all::<Xids>(conn, OURS, vec![]).await?;
    Ok(rows
        .into_iter()
        .next()
        .and_then(|row| row.xids)
        .unwrap_or_default()
        .split(',')
        .filter_map(|xid| xid.trim().parse::<u32>().ok())
        .filter_map(|xid| widen(xid, next))
        .collect())
}

/// The 64-bit id of a transaction whose low 32 bits are `xid` and that
/// began before `next`; `None` if it would be 2^31 or more before it (that
/// is, it began at or after `next`).
fn widen(xid: u32, next: u64) -> Option<u64> {
    let behind = (next as u32).wrapping_sub(xid);
    (behind != 0 && behind < 1 << 31)
        .then(|| next.checked_sub(u64::from(behind)))
        .flatten()
}

/// The low 32 bits of a 64-bit transaction id, as `pg_stat_activity` shows it.
fn short(xid: u64) -> u32 {
    (xid & u64::from(u32::MAX)) as u32
}

/// The log's horizon ([`horizon`]), waiting at most `within` (`None`:
/// as long as it takes) for the transactions in flight.
pub async fn reach(conn: &DatabaseConnection, within: Option<Duration>) -> Result<Reach, DbErr> {
    let last = fetch_i64(conn, LAST_GIVEN, vec![]).await?;
    // Every transaction that took a position up to `last` has an id below
    // `next`: it took its id before its position, and `last` was read
    // before `next`.
    let (mut now, next) = snapshot(conn).await?;
    // Once narrowed: the transactions of this database below `next` that
    // were in flight then; until then, every transaction below `next`.
    let mut waiting: Option<Vec<u64>> = None;
    let started = tokio::time::Instant::now();
    let mut pause = FIRST_PAUSE;
    let mut warned = false;
    loop {
        let settled = match &mut waiting {
            None => now.ended_below(next),
            Some(ours) => {
                ours.retain(|xid| !now.ended(*xid));
                ours.is_empty()
            }
        };
        if settled {
            return Ok(Reach::Horizon(last));
        }
        if within.is_some_and(|within| started.elapsed() >= within) {
            return Ok(Reach::HeldBelow(last));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LONGEST_PAUSE);
        now = snapshot(conn).await?.0;
        if waiting.is_none() && started.elapsed() >= NARROW_AFTER {
            // Each is in flight now or ended since: either way, waiting for
            // it is enough, and one that had ended is dropped at once.
            waiting = Some(ours(conn, next).await?);
        }
        if let Some(ours) = &waiting
            && !warned
            && !ours.is_empty()
            && started.elapsed() >= SLOW_HORIZON
        {
            warned = true;
            let ids: Vec<String> = ours.iter().map(|xid| short(*xid).to_string()).collect();
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
    fn a_snapshot_tells_only_of_transactions_below_its_xmax() {
        let snapshot = Snapshot::parse("100:104:100,102").expect("a snapshot");
        assert_eq!(snapshot.xmax, 104);
        assert_eq!(snapshot.in_flight, vec![100, 102]);
        assert!(snapshot.ended(101) && snapshot.ended(103));
        assert!(!snapshot.ended(100) && !snapshot.ended(102));
        // 104 and on may be in flight without being listed.
        assert!(!snapshot.ended(104) && !snapshot.ended(105));
        assert!(snapshot.ended_below(100) && !snapshot.ended_below(101));
        assert!(!snapshot.ended_below(105));
        let quiet = Snapshot::parse("27496:27496:").expect("a snapshot");
        assert!(quiet.in_flight.is_empty());
        // The transaction 27496 is in flight: the counter is ahead of xmax.
        assert!(!quiet.ended_below(27497));
        assert!(quiet.ended_below(27496));
        // Text that is no snapshot ends nothing.
        assert!(Snapshot::parse("").is_none());
        assert!(Snapshot::parse("100:x:").is_none());
        assert!(Snapshot::parse("100:104:100,y").is_none());
    }

    #[test]
    fn short_ids_widen_below_the_next_id() {
        assert_eq!(short((7 << 32) + 5), 5);
        assert_eq!(widen(5, (7 << 32) + 9), Some((7 << 32) + 5));
        // Across a wrap of the low 32 bits.
        assert_eq!(widen(u32::MAX, (7 << 32) + 2), Some((7 << 32) - 1));
        // Not before `next`: a later transaction.
        assert_eq!(widen(9, (7 << 32) + 9), None);
        assert_eq!(widen(10, (7 << 32) + 9), None);
    }
}

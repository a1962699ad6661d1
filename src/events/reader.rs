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
    let mut sql = Sql::new(
        "SELECT seq, id, action, actor, on_behalf_of, organization_id, resource_id, request_id, audit, payload, create_time FROM events WHERE action IN (",
    );
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

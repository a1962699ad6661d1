//! Pruning of the event log: events older than the retention
//! (`ORGS_EVENT_RETENTION_DAYS`) are deleted in small batches in the
//! background, by one replica at a time — the one holding the lease row of
//! `event_pruning` — so replicas do not contend for the same rows. Each batch
//! moves the watermark `pruned_through` in its own transaction: a cursor below
//! it may have lost events and is refused (`CURSOR_EXPIRED`), so a watch or
//! a listing above it stays exactly-once.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, TransactionTrait,
};
use tokio::sync::watch;

use crate::domain::time::{Clock, Micros};
use crate::store::Db;
use crate::store::entity::{event_pruning, events as log};

/// How pruning runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneSettings {
    /// Events older than this are deleted.
    pub retention: Duration,
    /// How often a replica tries to take the lease and prune.
    pub interval: Duration,
    /// Events deleted per transaction.
    pub batch: u64,
}

/// The highest sequence number pruned: a cursor below it is expired.
pub async fn pruned_through(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(event_pruning::Entity::find_by_id(1)
        .one(conn)
        .await?
        .map_or(0, |row| row.pruned_through))
}

/// Takes (or renews) the lease for `holder` until `until`, unless another
/// replica holds one that has not run out.
async fn take_lease(
    conn: &impl ConnectionTrait,
    holder: &str,
    now: Micros,
    until: Micros,
) -> Result<bool, DbErr> {
    let taken = event_pruning::Entity::update_many()
        .col_expr(event_pruning::Column::Holder, Expr::value(holder))
        .col_expr(event_pruning::Column::LeaseUntil, Expr::value(until))
        .filter(event_pruning::Column::Id.eq(1))
        .filter(
            Condition::any()
                .add(event_pruning::Column::Holder.eq(holder))
                .add(event_pruning::Column::LeaseUntil.lt(now)),
        )
        .exec(conn)
        .await?;
    Ok(taken.rows_affected == 1)
}

/// Prunes what is older than the retention at `now`, if `holder` gets the
/// lease; returns the events deleted.
pub async fn prune(
    db: &Db,
    holder: &str,
    now: Micros,
    settings: &PruneSettings,
) -> Result<u64, DbErr> {
    let lease = i64::try_from(settings.interval.saturating_mul(3).as_micros()).unwrap_or(i64::MAX);
    if !take_lease(db.conn(), holder, now, now.saturating_add(lease)).await? {
        return Ok(0);
    }
    let retention = i64::try_from(settings.retention.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now.saturating_sub(retention);
    let batch = settings.batch.max(1);
    let mut deleted = 0;
    loop {
        let txn = db.conn().begin().await?;
        let oldest: Vec<(i64, i64)> = log::Entity::find()
            .select_only()
            .column(log::Column::Seq)
            .column(log::Column::CreateTime)
            .order_by_asc(log::Column::Seq)
            .limit(batch)
            .into_tuple()
            .all(&txn)
            .await?;
        let expired = oldest.iter().take_while(|(_, time)| *time < cutoff).count();
        let Some(&(through, _)) = expired.checked_sub(1).and_then(|last| oldest.get(last)) else {
            txn.rollback().await?;
            break;
        };
        let removed = log::Entity::delete_many()
            .filter(log::Column::Seq.lte(through))
            .exec(&txn)
            .await?
            .rows_affected;
        event_pruning::Entity::update_many()
            .col_expr(event_pruning::Column::PrunedThrough, Expr::value(through))
            .filter(event_pruning::Column::Id.eq(1))
            .filter(event_pruning::Column::PrunedThrough.lt(through))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        deleted += removed;
        if expired < oldest.len() || (oldest.len() as u64) < batch {
            break;
        }
    }
    Ok(deleted)
}

/// Prunes every `settings.interval` until shutdown.
pub fn spawn(
    db: Db,
    clock: Arc<dyn Clock>,
    settings: PruneSettings,
    mut shutdown: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let holder = crate::domain::ids::new_id("replica");
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            match prune(&db, &holder, clock.now_micros(), &settings).await {
                Ok(0) => {}
                Ok(deleted) => tracing::info!(deleted, "event log pruned"),
                Err(err) => tracing::warn!(error = %err, "event log pruning failed"),
            }
        }
    })
}

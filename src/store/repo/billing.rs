//! The billing tables: `billing_user_activity` (who was active in which
//! period; its first activities in [`super::billing_activity`]),
//! `billing_active_members` (who counts for which organization),
//! `billing_organization_usage` (per-organization counters) and
//! `billing_totals` (the number of organizations); the per-period totals are
//! in [`super::billing_periods`]. Multi-row statements go in chunks and in key order, so
//! concurrent transactions take row locks in one order and cannot deadlock.

use sea_orm::sea_query::{Alias, Asterisk, Expr, ExprTrait, Func, OnConflict, Order, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbBackend, DbErr, EntityTrait,
    FromQueryResult, JoinType, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Value,
};

use crate::store::entity::{
    billing_active_members as active, billing_organization_usage as usage, billing_totals,
    budget_alerts, memberships,
};
use crate::store::{self, query, query::literal};

pub use super::billing_activity::{
    Activated, activate_inserted_postgres, activate_memberships, activate_sqlite, insert_activity,
    insert_activity_and_lock_users, is_active, known_active,
};
pub use super::billing_periods::{
    PeriodRow, add_billable, add_period_users, add_users_to_existing_period, ensure_period,
    period_totals,
};

/// Rows per multi-row statement: well below both backends' parameter limits.
pub(super) const CHUNK: usize = 500;

/// The counters of one organization in one period: a whole
/// `billing_organization_usage` row.
pub type UsageRow = usage::Model;

/// A user's standing among the billable organizations of a period.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct CostDriverRow {
    pub user_id: String,
    pub billable_organization_count: i64,
    pub sole_cause_count: i64,
}

/// Serializes, until commit, the transactions that decide whether a user
/// counts for an organization: recording its first activity in a period
/// (which reads its memberships) and adding a membership (which reads its
/// activity). Without it each could miss the other's uncommitted write on
/// PostgreSQL. The advisory locks are those of [`store::lock_key`], taken in
/// one order (PostgreSQL evaluates the volatile lock calls after the sort).
/// SQLite write transactions hold the database lock already.
pub async fn lock_users(conn: &impl ConnectionTrait, users: &[String]) -> Result<(), DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres || users.is_empty() {
        return Ok(());
    }
    for chunk in user_lock_keys(users).chunks(CHUNK) {
        let rows: Vec<String> = (1..=chunk.len())
            .map(|i| format!("(1, ${i}, false)"))
            .collect();
        let values = chunk.iter().map(|key| Value::from(key.as_str())).collect();
        // Raw SQL: see `advisory_locks_sql`.
        store::execute(conn, &advisory_locks_sql(&rows, "true"), values).await?;
    }
    Ok(())
}

/// The billing lock keys of `users`, sorted, each once.
pub(super) fn user_lock_keys(users: &[String]) -> Vec<String> {
    let mut keys: Vec<String> = users.iter().map(|user| user_lock_key(user)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// A statement taking PostgreSQL advisory locks over `(order, key, shared)`
/// rows (SQL `VALUES` items), each in `(order, hash)` order: PostgreSQL
/// evaluates the volatile lock calls after the sort. `condition` may tie the
/// locks to a row of an outer query. Raw SQL: advisory locks and the hash
/// function over a `VALUES` list, locked in sorted order, have no form in
/// the query builder.
pub(super) fn advisory_locks_sql(rows: &[String], condition: &str) -> String {
    format!(
        "SELECT CASE WHEN s THEN pg_advisory_xact_lock_shared(h) ELSE pg_advisory_xact_lock(h) END \
         FROM (SELECT n, hashtextextended(k, 0) AS h, s FROM (VALUES {}) AS v (n, k, s) WHERE {condition}) AS keys \
         ORDER BY n, h",
        rows.join(", ")
    )
}

/// The lock key of a user's billing state, as [`store::lock_key`] takes it.
pub fn user_lock_key(user_id: &str) -> String {
    format!("billing-user:{user_id}")
}

/// The users of the active memberships of an organization, sorted.
pub async fn active_member_users_of(
    conn: &impl ConnectionTrait,
    organization_id: &str,
) -> Result<Vec<String>, DbErr> {
    memberships::Entity::find()
        .select_only()
        .column(memberships::Column::UserId)
        .filter(memberships::Column::OrganizationId.eq(organization_id))
        .filter(memberships::Column::DeactivateTime.is_null())
        .order_by_asc(memberships::Column::UserId)
        .into_tuple()
        .all(conn)
        .await
}

/// Adds `(period, organization_id, user_id)` sorted rows to the active
/// members where absent; returns the `(period, organization_id)` of each row
/// it inserted.
pub async fn insert_active_members(
    conn: &impl ConnectionTrait,
    rows: &[(String, String, String)],
    now: i64,
) -> Result<Vec<(String, String)>, DbErr> {
    let mut inserted = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        let keys = active::Entity::insert_many(chunk.iter().map(|(period, organization, user)| {
            active::ActiveModel {
                period: Set(period.clone()),
                organization_id: Set(organization.clone()),
                user_id: Set(user.clone()),
                create_time: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([
                active::Column::Period,
                active::Column::OrganizationId,
                active::Column::UserId,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_with_returning_keys(conn)
        .await?;
        inserted.extend(
            keys.into_iter()
                .map(|(period, organization, _user)| (period, organization)),
        );
    }
    Ok(inserted)
}

/// Adds to the active-member counts, `(organization_id, period, increment)`
/// sorted by organization and period, creating counters as needed; returns
/// the counters after the change.
pub async fn add_to_usage(
    conn: &impl ConnectionTrait,
    increments: &[(String, String, i64)],
) -> Result<Vec<UsageRow>, DbErr> {
    let mut after = Vec::new();
    for chunk in increments.chunks(CHUNK) {
        let rows =
            usage::Entity::insert_many(chunk.iter().map(|(organization, period, increment)| {
                usage::ActiveModel {
                    organization_id: Set(organization.clone()),
                    period: Set(period.clone()),
                    active_member_count: Set(*increment),
                    ..Default::default()
                }
            }))
            .on_conflict(
                OnConflict::columns([usage::Column::OrganizationId, usage::Column::Period])
                    .value(
                        usage::Column::ActiveMemberCount,
                        Expr::col((usage::Entity, usage::Column::ActiveMemberCount)).add(
                            Expr::col((Alias::new("excluded"), usage::Column::ActiveMemberCount)),
                        ),
                    )
                    .to_owned(),
            )
            .exec_with_returning(conn)
            .await?;
        after.extend(rows);
    }
    Ok(after)
}

/// Records the transition to billable if it has not been recorded; returns
/// whether this call recorded it. The condition is checked on the row, so of
/// racing transactions exactly one records it.
pub async fn mark_billable(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    period: &str,
    threshold: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let result = usage::Entity::update_many()
        .col_expr(usage::Column::BillableSince, Expr::value(now))
        .filter(usage::Column::OrganizationId.eq(organization_id))
        .filter(usage::Column::Period.eq(period))
        .filter(usage::Column::BillableSince.is_null())
        .filter(usage::Column::ActiveMemberCount.gte(threshold))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn set_billable_order(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    period: &str,
    order: i64,
) -> Result<(), DbErr> {
    usage::Entity::update_many()
        .col_expr(usage::Column::BillableOrder, Expr::value(order))
        .filter(usage::Column::OrganizationId.eq(organization_id))
        .filter(usage::Column::Period.eq(period))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn usage(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    period: &str,
) -> Result<Option<UsageRow>, DbErr> {
    usage::Entity::find_by_id((organization_id.to_string(), period.to_string()))
        .one(conn)
        .await
}

/// Whether any billing history names the organization.
pub async fn has_history(
    conn: &impl ConnectionTrait,
    organization_id: &str,
) -> Result<bool, DbErr> {
    query::any(
        conn,
        usage::Entity::find().filter(usage::Column::OrganizationId.eq(organization_id)),
    )
    .await
}

/// Billable organizations of a period after position `after_order` and up
/// to `through_order`, in the order they became billable.
pub async fn billable_page(
    conn: &impl ConnectionTrait,
    period: &str,
    after_order: i64,
    through_order: i64,
    limit: u64,
) -> Result<Vec<UsageRow>, DbErr> {
    usage::Entity::find()
        .filter(usage::Column::Period.eq(period))
        .filter(usage::Column::BillableOrder.is_not_null())
        .filter(usage::Column::BillableOrder.gt(after_order))
        .filter(usage::Column::BillableOrder.lte(through_order))
        .order_by_asc(usage::Column::BillableOrder)
        .limit(limit)
        .all(conn)
        .await
}

/// The derived table of cost drivers, as `drivers`.
const DRIVERS: &str = "drivers";
const USER_ID: &str = "user_id";
const BILLABLE_ORGANIZATION_COUNT: &str = "billable_organization_count";
const SOLE_CAUSE_COUNT: &str = "sole_cause_count";

/// The aggregate behind cost drivers: per user, its billable organizations
/// in the period and how many of them have at most `threshold` active members
/// (so they would not be billable without it).
fn cost_driver_query(
    period: &str,
    threshold: i64,
    min_organizations: i64,
) -> sea_orm::sea_query::SelectStatement {
    let sole_cause: Expr = Expr::case(
        Expr::col((usage::Entity, usage::Column::ActiveMemberCount)).lte(threshold),
        literal(1),
    )
    .finally(literal(0))
    .into();
    active::Entity::find()
        .select_only()
        .column_as(active::Column::UserId, USER_ID)
        .column_as(Expr::col(Asterisk).count(), BILLABLE_ORGANIZATION_COUNT)
        .column_as(sole_cause.sum(), SOLE_CAUSE_COUNT)
        .join(JoinType::InnerJoin, active::usage())
        .filter(active::Column::Period.eq(period))
        .filter(usage::Column::BillableSince.is_not_null())
        .group_by(active::Column::UserId)
        .having(Expr::col(Asterisk).count().gte(min_organizations))
        .into_query()
}

/// One page of cost drivers, most billable organizations first, then by user
/// id, after the keyset position `after` (count, user id).
pub async fn cost_drivers(
    conn: &impl ConnectionTrait,
    period: &str,
    threshold: i64,
    min_organizations: i64,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<CostDriverRow>, DbErr> {
    let mut select = Query::select();
    select
        .columns([
            Alias::new(USER_ID),
            Alias::new(BILLABLE_ORGANIZATION_COUNT),
            Alias::new(SOLE_CAUSE_COUNT),
        ])
        .from_subquery(
            cost_driver_query(period, threshold, min_organizations),
            Alias::new(DRIVERS),
        );
    if let Some((count, user)) = after {
        select.cond_where(
            Condition::any()
                .add(Expr::col(Alias::new(BILLABLE_ORGANIZATION_COUNT)).lt(count))
                .add(
                    Condition::all()
                        .add(Expr::col(Alias::new(BILLABLE_ORGANIZATION_COUNT)).eq(count))
                        .add(Expr::col(Alias::new(USER_ID)).gt(user)),
                ),
        );
    }
    select
        .order_by(Alias::new(BILLABLE_ORGANIZATION_COUNT), Order::Desc)
        .order_by(Alias::new(USER_ID), Order::Asc)
        .limit(limit);
    query::fetch_all(conn, &select).await
}

pub async fn count_cost_drivers(
    conn: &impl ConnectionTrait,
    period: &str,
    threshold: i64,
    min_organizations: i64,
) -> Result<i64, DbErr> {
    let select = Query::select()
        .expr(Expr::col(Asterisk).count())
        .from_subquery(
            cost_driver_query(period, threshold, min_organizations),
            Alias::new(DRIVERS),
        )
        .to_owned();
    query::fetch_count(conn, &select).await
}

pub async fn total_organizations(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    Ok(billing_totals::Entity::find()
        .all(conn)
        .await?
        .iter()
        .map(|row| row.total_organizations)
        .sum())
}

/// Rows of `billing_totals` (the count is their sum), and of a period's
/// `billing_period_users`: as many as the migrations create (see
/// `m20261202_000012_totals_shards`), twice the calls a pool of 32 has in
/// flight, so that concurrent writers seldom share a row.
pub const TOTALS_SHARDS: i32 = 64;

/// The row of a sharded count (`billing_totals`, `billing_period_users`)
/// that a write moves. PostgreSQL: the row of the connection's server
/// process; with twice as many rows as a pool of 32 has connections they
/// seldom share one, so concurrent writes seldom wait for each other's commit
/// (rows chosen at random would be shared by several of 32 calls in flight).
/// SQLite, whose one writer waits for nobody: one at random.
pub(super) fn count_shard(backend: DbBackend) -> Expr {
    if backend == DbBackend::Postgres {
        Expr::expr(Func::cust("pg_backend_pid"))
            .modulo(TOTALS_SHARDS)
            .add(1)
    } else {
        Expr::val(random_shard())
    }
}

/// A row of a sharded count at random (SQLite's, see [`count_shard`]).
pub(super) fn random_shard() -> i32 {
    rand::random_range(1..=TOTALS_SHARDS)
}

/// Moves the organization counter by `delta` (+1 on create, −1 on delete)
/// on one of its rows ([`count_shard`]).
pub async fn add_to_total_organizations(
    conn: &impl ConnectionTrait,
    delta: i64,
) -> Result<(), DbErr> {
    use billing_totals::Column;
    billing_totals::Entity::update_many()
        .col_expr(
            Column::TotalOrganizations,
            Expr::col(Column::TotalOrganizations).add(delta),
        )
        .filter(Expr::col(Column::Id).eq(count_shard(conn.get_database_backend())))
        .exec(conn)
        .await?;
    Ok(())
}

/// Records that the amount due of `period` reached `percent` of the budget,
/// if not recorded yet; returns whether this call recorded it. The key
/// decides, so of racing transactions exactly one records it.
pub async fn record_budget_alert(
    conn: &impl ConnectionTrait,
    period: &str,
    percent: i32,
    amount_due: i64,
    budget: i64,
    now: i64,
) -> Result<bool, DbErr> {
    let inserted = budget_alerts::Entity::insert(budget_alerts::ActiveModel {
        period: Set(period.to_string()),
        percent: Set(percent),
        amount_due: Set(amount_due),
        budget: Set(budget),
        create_time: Set(now),
    })
    .on_conflict(
        OnConflict::columns([
            budget_alerts::Column::Period,
            budget_alerts::Column::Percent,
        ])
        .do_nothing()
        .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(inserted == 1)
}

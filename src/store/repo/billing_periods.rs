//! The totals of billing periods: `billing_periods` (one row per period: the
//! billable organizations, which decide their order) and
//! `billing_period_users` (a period's monthly active users, summed over rows
//! that concurrent first activities add to side by side).
//!
//! On PostgreSQL the first activities of new users are the busiest writers
//! here, and they must not wait for each other: each adds to the row of its
//! connection's server process, and none waits for a change that holds the
//! period's row (a new billable organization, until its commit) merely to
//! learn that the period exists.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, DerivePartialModel,
    EntityTrait, QueryFilter, Value,
};

use super::billing::TOTALS_SHARDS;
use crate::store;
use crate::store::entity::{billing_period_users, billing_periods};

/// The totals of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "billing_periods::Entity")]
pub struct PeriodRow {
    pub monthly_active_users: i64,
    pub billable_organizations: i64,
}

/// Creates the totals row of a period if absent; returns whether it did.
///
/// PostgreSQL: a period's row exists for all but its first moments, so it
/// is looked for first, in the statement's snapshot. The insert alone would
/// find it too, but an insert that meets a row another transaction is
/// changing waits for that transaction to end, and `add_billable` holds the
/// row until its commit.
pub async fn ensure_period(
    conn: &impl ConnectionTrait,
    period: &str,
    now: i64,
) -> Result<bool, DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres
        && store::fetch_i64(
            conn,
            "SELECT count(*) FROM billing_periods WHERE period = $1",
            vec![Value::from(period)],
        )
        .await?
            > 0
    {
        return Ok(false);
    }
    let inserted = billing_periods::Entity::insert(billing_periods::ActiveModel {
        period: Set(period.to_string()),
        monthly_active_users: Set(0),
        billable_organizations: Set(0),
        create_time: Set(now),
    })
    .on_conflict(
        OnConflict::column(billing_periods::Column::Period)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(inserted == 1)
}

/// Raw SQL: the row of this connection's server process, an expression the
/// entity's insert cannot take as a value. With twice as many rows as a pool
/// of 32 has connections they seldom share one, where rows chosen at random
/// would be shared by several of 32 calls in flight, each waiting for the
/// other's commit.
const ADD_PERIOD_USERS_POSTGRES: &str = "INSERT INTO billing_period_users \
     (period, shard, monthly_active_users) VALUES ($1, pg_backend_pid() % $3 + 1, $2) \
     ON CONFLICT (period, shard) DO UPDATE SET monthly_active_users = \
     billing_period_users.monthly_active_users + EXCLUDED.monthly_active_users";

/// Adds newly active users to a period's count, on one of its rows:
/// concurrent first activities seldom wait for each other's commit.
/// PostgreSQL takes its connection's row, SQLite (one writer) one at random.
pub async fn add_period_users(
    conn: &impl ConnectionTrait,
    period: &str,
    new_users: i64,
) -> Result<(), DbErr> {
    use billing_period_users::Column;
    if new_users == 0 {
        return Ok(());
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        store::execute(
            conn,
            ADD_PERIOD_USERS_POSTGRES,
            vec![
                Value::from(period),
                Value::from(new_users),
                Value::from(TOTALS_SHARDS),
            ],
        )
        .await?;
        return Ok(());
    }
    billing_period_users::Entity::insert(billing_period_users::ActiveModel {
        period: Set(period.to_string()),
        shard: Set(rand::random_range(1..=TOTALS_SHARDS)),
        monthly_active_users: Set(new_users),
    })
    .on_conflict(
        OnConflict::columns([Column::Period, Column::Shard])
            .value(
                Column::MonthlyActiveUsers,
                Expr::col((billing_period_users::Entity, Column::MonthlyActiveUsers))
                    .add(new_users),
            )
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Adds newly billable organizations to a period's totals; returns its
/// billable organizations after the change. The period's one row decides
/// their order, so these changes wait for each other.
pub async fn add_billable(
    conn: &impl ConnectionTrait,
    period: &str,
    new_billable: i64,
) -> Result<i64, DbErr> {
    use billing_periods::Column;
    let after = billing_periods::Entity::update_many()
        .col_expr(
            Column::BillableOrganizations,
            Expr::col(Column::BillableOrganizations).add(new_billable),
        )
        .filter(Column::Period.eq(period))
        .exec_with_returning(conn)
        .await?;
    Ok(after
        .first()
        .map(|row| row.billable_organizations)
        .unwrap_or(0))
}

pub async fn period_totals(conn: &impl ConnectionTrait, period: &str) -> Result<PeriodRow, DbErr> {
    let mut totals: PeriodRow = billing_periods::Entity::find_by_id(period)
        .into_partial_model()
        .one(conn)
        .await?
        .unwrap_or_default();
    totals.monthly_active_users += billing_period_users::Entity::find()
        .filter(billing_period_users::Column::Period.eq(period))
        .all(conn)
        .await?
        .iter()
        .map(|row| row.monthly_active_users)
        .sum::<i64>();
    Ok(totals)
}

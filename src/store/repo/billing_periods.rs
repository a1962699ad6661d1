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

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, DerivePartialModel,
    EntityTrait, QueryFilter,
};

use super::billing::count_shard;
use crate::store::entity::{billing_period_users, billing_periods};
use crate::store::query;

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
        && query::any(conn, billing_periods::Entity::find_by_id(period)).await?
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

/// Adds newly active users to a period's count, on one of its rows
/// ([`count_shard`]): concurrent first activities seldom wait for each
/// other's commit.
pub async fn add_period_users(
    conn: &impl ConnectionTrait,
    period: &str,
    new_users: i64,
) -> Result<(), DbErr> {
    if new_users == 0 {
        return Ok(());
    }
    let mut insert = period_users_insert(new_users);
    insert.values_panic([
        period.into(),
        count_shard(conn.get_database_backend()),
        new_users.into(),
    ]);
    conn.execute(&insert).await?;
    Ok(())
}

/// [`add_period_users`] if the period's totals row exists, in one round
/// trip; returns whether it did (if not, nothing was written: the caller
/// creates the period with [`ensure_period`] first). A period's row exists
/// for all but its first moments, so this is the one statement of nearly
/// every first activity; the row is read in the statement's snapshot and
/// never waited for, as in [`ensure_period`].
pub async fn add_users_to_existing_period(
    conn: &impl ConnectionTrait,
    period: &str,
    new_users: i64,
) -> Result<bool, DbErr> {
    use billing_period_users::Column;
    let backend = conn.get_database_backend();
    // SQLite needs the WHERE before ON CONFLICT to tell the upsert from a
    // join's ON.
    let source = Query::select()
        .exprs([
            Expr::val(period),
            count_shard(backend),
            Expr::val(new_users),
        ])
        .and_where(Expr::exists(
            Query::select()
                .expr(query::literal(1))
                .from(billing_periods::Entity)
                .and_where(Expr::col(billing_periods::Column::Period).eq(period))
                .to_owned(),
        ))
        .to_owned();
    let mut insert = period_users_insert(new_users);
    insert
        .select_from(source)
        .map_err(|err| DbErr::Custom(err.to_string()))?
        .returning_col(Column::Shard);
    Ok(conn.query_one(&insert).await?.is_some())
}

/// The upsert of `new_users` into a row of a period's user count, without
/// its source of values.
fn period_users_insert(new_users: i64) -> sea_orm::sea_query::InsertStatement {
    use billing_period_users::Column;
    Query::insert()
        .into_table(billing_period_users::Entity)
        .columns([Column::Period, Column::Shard, Column::MonthlyActiveUsers])
        .on_conflict(
            OnConflict::columns([Column::Period, Column::Shard])
                .value(
                    Column::MonthlyActiveUsers,
                    Expr::col((billing_period_users::Entity, Column::MonthlyActiveUsers))
                        .add(new_users),
                )
                .to_owned(),
        )
        .to_owned()
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

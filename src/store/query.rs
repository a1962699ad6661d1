//! Small pieces the repositories share on top of the SeaORM query builder.

use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, SelectStatement};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QuerySelect, QueryTrait,
    Select, Value,
};

/// `SELECT COUNT(*)` over the rows `select` would return, written straight
/// over its table and conditions. SeaORM's own `count()` wraps the query in a
/// sub-select of every column; this keeps the statement the planner sees as
/// small as the count it asks for.
pub(crate) async fn count<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    select: Select<E>,
) -> Result<i64, DbErr> {
    let count = select
        .select_only()
        .expr(Expr::col(Asterisk).count())
        .into_query();
    fetch_count(conn, &count).await
}

/// Whether `select` finds any row, as `COUNT(*) > 0`.
pub(crate) async fn any<E: EntityTrait>(
    conn: &impl ConnectionTrait,
    select: Select<E>,
) -> Result<bool, DbErr> {
    Ok(count(conn, select).await? > 0)
}

/// A value written into the SQL text instead of being bound. Conditions such
/// as `status = 'pending'` or `verified = TRUE` stay literal so the planner
/// sees them when it chooses an index (the partial indexes are declared with
/// the same literals); only constants of the code go here, never input.
pub(crate) fn literal(value: impl Into<Value>) -> Expr {
    Expr::Constant(value.into())
}

/// `column = <literal>`: see [`literal`].
pub(crate) fn eq_literal(column: impl ColumnTrait, value: impl Into<Value>) -> Expr {
    column.into_expr().eq(literal(value))
}

/// Runs a sea-query `SELECT` and reads every row as `T`.
pub(crate) async fn fetch_all<T: FromQueryResult>(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<Vec<T>, DbErr> {
    conn.query_all(select)
        .await?
        .iter()
        .map(|row| T::from_query_result(row, ""))
        .collect()
}

/// Runs a sea-query `SELECT` returning one integer (a count); 0 without a row.
pub(crate) async fn fetch_count(
    conn: &impl ConnectionTrait,
    select: &SelectStatement,
) -> Result<i64, DbErr> {
    match conn.query_one(select).await? {
        Some(row) => Ok(row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0)),
        None => Ok(0),
    }
}

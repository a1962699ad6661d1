//! Small pieces the repositories share on top of the SeaORM query builder.

use std::sync::OnceLock;

use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, SelectStatement, Values};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QuerySelect,
    QueryTrait, Select, Statement, Value,
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

/// Parameter `n` (from 1) of a SQLite statement built once ([`Template`]):
/// it takes the `n`th value of each call, however often and wherever the
/// statement uses it.
pub(crate) fn sqlite_param(n: usize) -> Expr {
    Expr::cust(format!("?{n}"))
}

/// A SQLite statement string whose text is the same on every call, built by
/// the query builder on its first use and kept: the call's values are
/// parameters ([`sqlite_param`]) and constants are literals ([`literal`]),
/// so the text binds nothing of its own. Each call then only lists its
/// values. Building a statement's tree and writing it out costs about as
/// much as SQLite takes to run it, and on SQLite the one writer runs its
/// units one after another, so that cost was every caller's wait.
pub(crate) struct Template(OnceLock<Built>);

/// A template's text, its parameters plain `?`s, and the value each of
/// them takes, in the order they appear. (`?NNN` would bind by number, but
/// sqlx reads the numbers a statement of a string skips as positional
/// parameters and stops binding once those run past the values.)
struct Built {
    sql: String,
    params: Vec<usize>,
}

impl Template {
    pub(crate) const fn new() -> Self {
        Template(OnceLock::new())
    }

    /// The statement with `values` (parameter `n` takes `values[n - 1]`),
    /// its text built by `build` (statements run one after another in one
    /// string) the first time. A statement that binds a value of its own is
    /// refused: its value would be kept in the text for every later call.
    pub(crate) fn statement(
        &self,
        build: impl FnOnce() -> Result<Vec<(String, Values)>, DbErr>,
        values: Vec<Value>,
    ) -> Result<Statement, DbErr> {
        let built = match self.0.get() {
            Some(built) => built,
            None => {
                let built = Built::new(build()?)?;
                // Another call may have built it meanwhile: the same text.
                self.0.get_or_init(|| built)
            }
        };
        let bound = built
            .params
            .iter()
            .map(|&n| {
                values.get(n - 1).cloned().ok_or_else(|| {
                    DbErr::Custom(format!(
                        "a statement built once takes parameter {n} of {} values",
                        values.len()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Statement::from_sql_and_values(
            DbBackend::Sqlite,
            built.sql.clone(),
            bound,
        ))
    }
}

impl Built {
    fn new(statements: Vec<(String, Values)>) -> Result<Self, DbErr> {
        let mut text = String::new();
        for (sql, bound) in statements {
            if !bound.0.is_empty() {
                return Err(DbErr::Custom(format!(
                    "a statement built once binds {} value(s) of its own: {sql}",
                    bound.0.len()
                )));
            }
            if !text.is_empty() {
                text.push_str(";\n");
            }
            text.push_str(&sql);
        }
        // `?NNN` outside quoted literals and names becomes `?`.
        let mut built = Built {
            sql: String::with_capacity(text.len()),
            params: Vec::new(),
        };
        let mut quote = None;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            built.sql.push(c);
            match (quote, c) {
                (Some(open), _) if c == open => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '?') => {
                    let mut digits = String::new();
                    while let Some(digit) = chars.next_if(char::is_ascii_digit) {
                        digits.push(digit);
                    }
                    match digits.parse::<usize>() {
                        Ok(n) if n >= 1 => built.params.push(n),
                        _ => {
                            return Err(DbErr::Custom(format!(
                                "a statement built once has a parameter without a number: {text}"
                            )));
                        }
                    }
                }
                (None, _) => {}
            }
        }
        Ok(built)
    }
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

#[cfg(test)]
mod tests {
    use sea_orm::sea_query::{Alias, Query, SqliteQueryBuilder};

    use super::*;

    fn select(items: Vec<Expr>) -> (String, Values) {
        let mut select = Query::select();
        for item in items {
            select.expr(item);
        }
        select.build(SqliteQueryBuilder)
    }

    #[test]
    fn a_template_binds_each_use_of_a_parameter_in_turn() {
        let template = Template::new();
        let build = || {
            Ok(vec![
                select(vec![sqlite_param(2), literal("a ?3 'b'"), sqlite_param(1)]),
                select(vec![
                    Expr::col(Alias::new("x?1")).eq(sqlite_param(2)),
                    sqlite_param(12),
                ]),
            ])
        };
        let values = |first: &str| {
            let mut values: Vec<Value> = (1..=12).map(|n| Value::from(n as i64)).collect();
            values[1] = first.into();
            values
        };
        let statement = template.statement(build, values("two")).unwrap();
        assert_eq!(
            statement.sql,
            "SELECT ?, 'a ?3 ''b''', ?;\nSELECT \"x?1\" = (?), ?"
        );
        let bound = |statement: &Statement| statement.values.clone().unwrap().0;
        assert_eq!(
            bound(&statement),
            vec![
                Value::from("two"),
                Value::from(1i64),
                Value::from("two"),
                Value::from(12i64)
            ]
        );
        // Built once: a later call lists only its values.
        let later = template
            .statement(|| panic!("built again"), values("deux"))
            .unwrap();
        assert_eq!(later.sql, statement.sql);
        assert_eq!(bound(&later)[0], Value::from("deux"));
    }

    #[test]
    fn a_template_refuses_values_of_its_own_and_missing_ones() {
        let own = Template::new().statement(|| Ok(vec![select(vec![Expr::val(7)])]), vec![]);
        assert!(matches!(own, Err(DbErr::Custom(message)) if message.contains("binds 1 value")));
        let missing = Template::new().statement(
            || Ok(vec![select(vec![sqlite_param(3)])]),
            vec![Value::from(1i64)],
        );
        assert!(
            matches!(missing, Err(DbErr::Custom(message)) if message.contains("parameter 3 of 1"))
        );
    }
}

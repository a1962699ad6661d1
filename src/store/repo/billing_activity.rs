//! First activities: `billing_user_activity` (who was active in which
//! period) and the `billing_active_members` rows a first activity makes of
//! the user's memberships, with the user locks that order them against
//! memberships being added ([`super::billing::lock_users`]).

use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult,
    QueryFilter, QuerySelect,
};

use super::billing::{CHUNK, lock_users};
use crate::store::entity::billing_user_activity as activity;
use crate::store::{self, Sql, query};

/// Of `users`, those already active in `period`.
pub async fn known_active(
    conn: &impl ConnectionTrait,
    period: &str,
    users: &[String],
) -> Result<Vec<String>, DbErr> {
    let mut known = Vec::new();
    for chunk in users.chunks(CHUNK) {
        let rows: Vec<String> = activity::Entity::find()
            .select_only()
            .column(activity::Column::UserId)
            .filter(activity::Column::Period.eq(period))
            .filter(activity::Column::UserId.is_in(chunk.iter().map(String::as_str)))
            .into_tuple()
            .all(conn)
            .await?;
        known.extend(rows);
    }
    Ok(known)
}

/// Whether `user_id` is active in `period`.
pub async fn is_active(
    conn: &impl ConnectionTrait,
    period: &str,
    user_id: &str,
) -> Result<bool, DbErr> {
    query::any(
        conn,
        activity::Entity::find()
            .filter(activity::Column::Period.eq(period))
            .filter(activity::Column::UserId.eq(user_id)),
    )
    .await
}

/// Records first activities, `(period, user_id, occur_time)` sorted by
/// period and user, where absent; returns the `(period, user_id)` pairs it
/// inserted. The insert decides, so of two replicas racing for one user
/// exactly one sees it as new.
pub async fn insert_activity(
    conn: &impl ConnectionTrait,
    rows: &[(String, String, i64)],
    now: i64,
) -> Result<Vec<(String, String)>, DbErr> {
    let mut inserted = Vec::new();
    for chunk in rows.chunks(CHUNK) {
        let keys = activity::Entity::insert_many(chunk.iter().map(|(period, user, occur)| {
            activity::ActiveModel {
                period: Set(period.clone()),
                user_id: Set(user.clone()),
                first_occur_time: Set(*occur),
                record_time: Set(now),
            }
        }))
        .on_conflict(
            OnConflict::columns([activity::Column::Period, activity::Column::UserId])
                .do_nothing()
                .to_owned(),
        )
        .exec_with_returning_keys(conn)
        .await?;
        inserted.extend(keys);
    }
    Ok(inserted)
}

/// [`insert_activity`], then [`lock_users`] for the users it inserted, and
/// on PostgreSQL in one round trip while the rows fit one statement: the
/// locks come after the insert, as they would in turn, and every read that
/// they protect runs in a later statement. Returns the `(period, user_id)`
/// pairs inserted.
pub async fn insert_activity_and_lock_users(
    conn: &impl ConnectionTrait,
    rows: &[(String, String, i64)],
    now: i64,
) -> Result<Vec<(String, String)>, DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres || rows.len() > CHUNK {
        let inserted = insert_activity(conn, rows, now).await?;
        let users: Vec<String> = inserted.iter().map(|(_, user)| user.clone()).collect();
        lock_users(conn, &users).await?;
        return Ok(inserted);
    }
    // Raw SQL: a data-modifying WITH whose rows take advisory locks has no
    // form in the query builder. The keys are `user_lock_key`'s, hashed and
    // locked in order as `advisory_locks_sql` locks them (PostgreSQL
    // evaluates the volatile lock calls after the sort).
    let mut sql = Sql::new(
        DbBackend::Postgres,
        "WITH inserted AS (\
           INSERT INTO billing_user_activity (period, user_id, first_occur_time, record_time) \
           VALUES ",
    );
    activity_values(&mut sql, rows, now);
    sql.push(
        " ON CONFLICT (period, user_id) DO NOTHING \
           RETURNING period, user_id), \
         locked AS MATERIALIZED (\
           SELECT pg_advisory_xact_lock(h) \
           FROM (SELECT DISTINCT hashtextextended('billing-user:' || user_id, 0) AS h FROM inserted) AS keys \
           ORDER BY h) \
         SELECT period, user_id FROM inserted WHERE (SELECT count(*) FROM locked) >= 0",
    );
    let (sql, values) = sql.into_parts();
    let inserted: Vec<ActivityKey> = store::fetch_all(conn, &sql, values).await?;
    Ok(inserted
        .into_iter()
        .map(|row| (row.period, row.user_id))
        .collect())
}

/// The rows of an activity insert, `(period, user_id, first_occur_time,
/// record_time)` items of its `VALUES` list.
fn activity_values(sql: &mut Sql, rows: &[(String, String, i64)], now: i64) {
    for (n, (period, user, occur)) in rows.iter().enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" })
            .bind(period.as_str())
            .push(", ")
            .bind(user.as_str())
            .push(", ")
            .bind(*occur)
            .push(", ")
            .bind(now)
            .push(")");
    }
}

/// `(period, user_id)` items of a `VALUES` list.
fn pair_values<'a>(sql: &mut Sql, pairs: impl Iterator<Item = (&'a String, &'a String)>) {
    for (n, (period, user)) in pairs.enumerate() {
        sql.push(if n == 0 { "(" } else { ", (" })
            .bind(period.as_str())
            .push(", ")
            .bind(user.as_str())
            .push(")");
    }
}

/// A row [`insert_activity_and_lock_users`] inserted.
#[derive(Debug, FromQueryResult)]
struct ActivityKey {
    period: String,
    user_id: String,
}

/// Makes users active members of the organizations they belong to:
/// `inserted` holds `(period, user_id)` pairs just made active; each active
/// membership of such a user in an active organization gets its
/// `(period, organization_id, user_id)` row where absent. Returns the
/// `(period, organization_id)` of each row inserted. One statement: the
/// memberships are read in its own snapshot, so it runs after
/// [`lock_users`] for these users, and the rows go in sorted, as
/// [`super::billing::insert_active_members`] inserts them, so concurrent inserts take the
/// unique index's entries in one order. Raw SQL: an `INSERT … SELECT` over
/// a `VALUES` list joined to two tables, with an upsert, has no form in the
/// query builder.
pub async fn activate_memberships(
    conn: &impl ConnectionTrait,
    inserted: &[(String, String)],
    now: i64,
) -> Result<Vec<(String, String)>, DbErr> {
    let mut rows = Vec::new();
    for chunk in inserted.chunks(CHUNK) {
        let mut sql = Sql::new(
            conn.get_database_backend(),
            "INSERT INTO billing_active_members (period, organization_id, user_id, create_time) \
             SELECT a.column1, m.organization_id, m.user_id, ",
        );
        sql.bind(now).push(" FROM (VALUES ");
        pair_values(&mut sql, chunk.iter().map(|(period, user)| (period, user)));
        // SQLite needs the WHERE before ON CONFLICT to tell the upsert from
        // a join's ON.
        sql.push(
            ") AS a \
             JOIN memberships AS m ON m.user_id = a.column2 \
             JOIN organizations AS o ON o.id = m.organization_id \
             WHERE m.deactivate_time IS NULL AND o.deactivate_time IS NULL \
             ORDER BY a.column1, m.organization_id, m.user_id \
             ON CONFLICT (period, organization_id, user_id) DO NOTHING \
             RETURNING period, organization_id",
        );
        let (sql, values) = sql.into_parts();
        let found: Vec<ActivatedRow> = store::fetch_all(conn, &sql, values).await?;
        rows.extend(
            found
                .into_iter()
                .map(|row| (row.period, row.organization_id)),
        );
    }
    Ok(rows)
}

/// A row [`activate_memberships`] inserted.
#[derive(Debug, FromQueryResult)]
struct ActivatedRow {
    period: String,
    organization_id: String,
}

/// What [`activate_sqlite`] or [`activate_inserted_postgres`] did.
#[derive(Debug, Default)]
pub struct Activated {
    /// The `(period, user_id)` pairs it inserted: the users new to a period.
    pub inserted: Vec<(String, String)>,
    /// The counters it added to, after the change.
    pub usage: Vec<super::billing::UsageRow>,
    /// Of the periods of `inserted`, those whose totals row exists: their
    /// user counts were added to. A period not among them has no row yet
    /// and nothing was added for it.
    pub existing_periods: Vec<String>,
}

/// On SQLite, in one round trip to the writer's connection: records first
/// activities `(period, user_id, occur_time)` where absent,
/// makes the active memberships of the users it inserted active members,
/// adds them to their organizations' counters and to the user count of
/// each period whose totals row exists. `None` on PostgreSQL, for more
/// rows than one statement list takes or for a pair given twice: the caller
/// then runs the statements one by one.
///
/// The statements run in one transaction that holds the database (the
/// writer's batch), so what an earlier statement of the list did not yet
/// write tells what a later one will: the memberships and counters come
/// first, each reading "not yet active in the period" before the activity
/// insert makes it so, and each counter counts exactly the active-member
/// rows inserted after it. Raw SQL: `INSERT … SELECT` over `VALUES` lists
/// joined to other tables, with upserts, has no form in the query builder.
pub async fn activate_sqlite(
    conn: &impl ConnectionTrait,
    rows: &[(String, String, i64)],
    now: i64,
) -> Result<Option<Activated>, DbErr> {
    let backend = conn.get_database_backend();
    if backend != DbBackend::Sqlite || rows.is_empty() || rows.len() > CHUNK {
        return Ok(None);
    }
    // A pair given twice would be counted twice by the counters' statement.
    let pairs: std::collections::BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|(period, user, _)| (period.as_str(), user.as_str()))
        .collect();
    if pairs.len() < rows.len() {
        return Ok(None);
    }
    /// The pairs, as `v(column1 period, column2 user_id)`, with those
    /// already active in their period left out.
    fn new_pairs(sql: &mut Sql, rows: &[(String, String, i64)]) {
        sql.push("(VALUES ");
        pair_values(sql, rows.iter().map(|(period, user, _)| (period, user)));
        sql.push(
            ") AS v WHERE NOT EXISTS (SELECT 1 FROM billing_user_activity AS a \
             WHERE a.period = v.column1 AND a.user_id = v.column2)",
        );
    }
    let mut sql = Sql::new(backend, "");
    let members = |sql: &mut Sql| {
        sql.push(" FROM (SELECT v.column1 AS period, v.column2 AS user_id FROM ");
        new_pairs(sql, rows);
        sql.push(
            ") AS n \
             JOIN memberships AS m ON m.user_id = n.user_id \
             JOIN organizations AS o ON o.id = m.organization_id \
             WHERE m.deactivate_time IS NULL AND o.deactivate_time IS NULL \
             AND NOT EXISTS (SELECT 1 FROM billing_active_members AS b \
             WHERE b.period = n.period AND b.organization_id = m.organization_id \
             AND b.user_id = m.user_id)",
        );
    };
    // 1. The counters, by the active-member rows that 2. inserts.
    sql.push(
        "INSERT INTO billing_organization_usage (organization_id, period, active_member_count) \
         SELECT m.organization_id, n.period, count(*)",
    );
    members(&mut sql);
    sql.push(
        " GROUP BY m.organization_id, n.period \
         ON CONFLICT (organization_id, period) DO UPDATE SET \
         active_member_count = active_member_count + excluded.active_member_count \
         RETURNING 'usage' AS row_kind, organization_id, period, active_member_count, \
         billable_since, billable_order;\n\
         INSERT INTO billing_active_members (period, organization_id, user_id, create_time) \
         SELECT n.period, m.organization_id, m.user_id, ",
    );
    sql.bind(now);
    members(&mut sql);
    // 3. The periods' user counts, where their totals row exists.
    sql.push(
        " ON CONFLICT (period, organization_id, user_id) DO NOTHING;\n\
         INSERT INTO billing_period_users (period, shard, monthly_active_users) \
         SELECT n.period, ",
    );
    // One writer: the shards of SQLite's counts never wait for each other.
    sql.bind(rand::random_range(1..=super::billing::TOTALS_SHARDS))
        .push(", count(*) FROM (SELECT v.column1 AS period FROM ");
    new_pairs(&mut sql, rows);
    sql.push(
        ") AS n WHERE EXISTS (SELECT 1 FROM billing_periods AS p WHERE p.period = n.period) \
         GROUP BY n.period \
         ON CONFLICT (period, shard) DO UPDATE SET \
         monthly_active_users = monthly_active_users + excluded.monthly_active_users;\n\
         INSERT INTO billing_user_activity (period, user_id, first_occur_time, record_time) VALUES ",
    );
    // 4. The activities themselves.
    activity_values(&mut sql, rows, now);
    sql.push(
        " ON CONFLICT (period, user_id) DO NOTHING \
         RETURNING 'activity' AS row_kind, period, user_id;\n\
         SELECT 'period' AS row_kind, period FROM billing_periods WHERE period IN (",
    );
    let mut periods: Vec<&str> = rows.iter().map(|(period, _, _)| period.as_str()).collect();
    periods.sort_unstable();
    periods.dedup();
    for (n, period) in periods.into_iter().enumerate() {
        if n > 0 {
            sql.push(", ");
        }
        sql.bind(period);
    }
    sql.push(")");
    let (sql, values) = sql.into_parts();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    let mut activated = Activated::default();
    read_activated(rows, &mut activated)?;
    Ok(Some(activated))
}

/// On PostgreSQL, in one statement after [`insert_activity_and_lock_users`]
/// (whose locks it must follow: it reads the memberships in its own
/// snapshot): makes the active memberships of the users just made active
/// (`inserted`, `(period, user_id)` pairs) active members, adds them to
/// their organizations' counters and adds the users to the user count of
/// each period whose totals row exists. Answers the counters after the
/// change and the periods whose count it added to, as [`Activated`]'s
/// `usage` and `existing_periods`. `None` on SQLite or for more pairs than
/// one statement takes: the caller then runs the statements one by one.
///
/// Raw SQL: data-modifying `WITH` queries feeding each other, with
/// upserts, have no form in the query builder. The member rows go in
/// sorted and the counters are upserted sorted, as
/// [`activate_memberships`] and [`super::billing::add_to_usage`] do, so
/// concurrent changes take the rows in one order.
pub async fn activate_inserted_postgres(
    conn: &impl ConnectionTrait,
    inserted: &[(String, String)],
    now: i64,
) -> Result<Option<Activated>, DbErr> {
    let backend = conn.get_database_backend();
    if backend != DbBackend::Postgres || inserted.is_empty() || inserted.len() > CHUNK {
        return Ok(None);
    }
    let mut sql = Sql::new(backend, "WITH pairs (period, user_id) AS (VALUES ");
    pair_values(
        &mut sql,
        inserted.iter().map(|(period, user)| (period, user)),
    );
    sql.push(
        "), members AS (\
           INSERT INTO billing_active_members (period, organization_id, user_id, create_time) \
           SELECT p.period, m.organization_id, m.user_id, ",
    );
    sql.bind(now).push(
        " FROM pairs AS p \
           JOIN memberships AS m ON m.user_id = p.user_id \
           JOIN organizations AS o ON o.id = m.organization_id \
           WHERE m.deactivate_time IS NULL AND o.deactivate_time IS NULL \
           ORDER BY p.period, m.organization_id, m.user_id \
           ON CONFLICT (period, organization_id, user_id) DO NOTHING \
           RETURNING period, organization_id), \
         users AS (\
           INSERT INTO billing_period_users (period, shard, monthly_active_users) \
           SELECT p.period, pg_backend_pid() % ",
    );
    sql.bind(super::billing::TOTALS_SHARDS).push(
        " + 1, count(*) FROM pairs AS p \
           WHERE EXISTS (SELECT 1 FROM billing_periods AS b WHERE b.period = p.period) \
           GROUP BY p.period \
           ON CONFLICT (period, shard) DO UPDATE SET monthly_active_users = \
             billing_period_users.monthly_active_users + excluded.monthly_active_users \
           RETURNING period), \
         usage AS (\
           INSERT INTO billing_organization_usage (organization_id, period, active_member_count) \
           SELECT organization_id, period, count(*) FROM members \
           GROUP BY organization_id, period ORDER BY organization_id, period \
           ON CONFLICT (organization_id, period) DO UPDATE SET active_member_count = \
             billing_organization_usage.active_member_count + excluded.active_member_count \
           RETURNING organization_id, period, active_member_count, billable_since, billable_order) \
         SELECT 'usage' AS row_kind, organization_id, period, active_member_count, \
           billable_since, billable_order FROM usage \
         UNION ALL \
         SELECT 'period', NULL, period, NULL, NULL, NULL FROM users",
    );
    let (sql, values) = sql.into_parts();
    let rows = conn
        .query_all_raw(sea_orm::Statement::from_sql_and_values(
            backend, sql, values,
        ))
        .await?;
    let mut activated = Activated {
        inserted: inserted.to_vec(),
        ..Activated::default()
    };
    read_activated(rows, &mut activated)?;
    Ok(Some(activated))
}

/// Sorts the answer rows of [`activate_sqlite`] and
/// [`activate_inserted_postgres`] into `activated`, by their `row_kind`.
fn read_activated(rows: Vec<sea_orm::QueryResult>, activated: &mut Activated) -> Result<(), DbErr> {
    for row in rows {
        let kind: String = row.try_get("", "row_kind")?;
        match kind.as_str() {
            "usage" => activated
                .usage
                .push(super::billing::UsageRow::from_query_result(&row, "")?),
            "activity" => activated
                .inserted
                .push((row.try_get("", "period")?, row.try_get("", "user_id")?)),
            _ => activated.existing_periods.push(row.try_get("", "period")?),
        }
    }
    Ok(())
}

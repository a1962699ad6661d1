//! The billing tables: `billing_user_activity` (who was active in which
//! period), `billing_active_members` (who counts for which organization),
//! `billing_organization_usage` (per-organization counters),
//! `billing_periods` (per-period totals) and `billing_totals` (the number of
//! organizations). Multi-row statements go in chunks and in key order, so
//! concurrent transactions take row locks in one order and cannot deadlock.

use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Value};

use crate::store::{self, Sql};
use crate::values;

/// Rows per multi-row statement: well below both backends' parameter limits.
const CHUNK: usize = 500;

/// The counters of one organization in one period.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct UsageRow {
    pub organization_id: String,
    pub period: String,
    pub active_member_count: i64,
    pub billable_since: Option<i64>,
    pub billable_order: Option<i64>,
}

/// The totals of one period.
#[derive(Debug, Clone, Default, PartialEq, Eq, FromQueryResult)]
pub struct PeriodRow {
    pub monthly_active_users: i64,
    pub billable_organizations: i64,
}

#[derive(Debug, FromQueryResult)]
struct UserRow {
    user_id: String,
}

#[derive(Debug, FromQueryResult)]
struct PeriodUserRow {
    period: String,
    user_id: String,
}

#[derive(Debug, FromQueryResult)]
struct OrganizationUserRow {
    organization_id: String,
    user_id: String,
}

#[derive(Debug, FromQueryResult)]
struct PeriodOrganizationRow {
    period: String,
    organization_id: String,
}

/// A user's standing among the billable organizations of a period.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct CostDriverRow {
    pub user_id: String,
    pub billable_organization_count: i64,
    pub sole_cause_count: i64,
}

/// `($1, $2, …), (…)` for `rows` rows of `width` values, appended to `sql`.
fn push_tuples(sql: &mut Sql, rows: impl IntoIterator<Item = Vec<Value>>) {
    let mut first = true;
    for row in rows {
        let placeholders: Vec<String> = row.into_iter().map(|value| sql.bind(value)).collect();
        if !first {
            sql.push(", ");
        }
        first = false;
        sql.push(&format!("({})", placeholders.join(", ")));
    }
}

/// `$1, $2, …` for a list of values, appended to `sql`.
fn push_list(sql: &mut Sql, items: &[String]) {
    let placeholders: Vec<String> = items.iter().map(|item| sql.bind(item.clone())).collect();
    sql.push(&placeholders.join(", "));
}

/// Of `users`, those already active in `period`.
pub async fn known_active(
    conn: &impl ConnectionTrait,
    period: &str,
    users: &[String],
) -> Result<Vec<String>, DbErr> {
    let mut known = Vec::new();
    for chunk in users.chunks(CHUNK) {
        let mut sql = Sql::new("SELECT user_id FROM billing_user_activity WHERE period = ");
        let p = sql.bind(period.to_string());
        sql.push(&p);
        sql.push(" AND user_id IN (");
        push_list(&mut sql, chunk);
        sql.push(")");
        let rows: Vec<UserRow> = store::fetch_all(conn, &sql.text, sql.values).await?;
        known.extend(rows.into_iter().map(|row| row.user_id));
    }
    Ok(known)
}

/// Whether `user_id` is active in `period`.
pub async fn is_active(
    conn: &impl ConnectionTrait,
    period: &str,
    user_id: &str,
) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM billing_user_activity WHERE period = $1 AND user_id = $2",
        values![period, user_id],
    )
    .await?
        > 0)
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
        let mut sql = Sql::new(
            "INSERT INTO billing_user_activity (period, user_id, first_occur_time, record_time) VALUES ",
        );
        push_tuples(
            &mut sql,
            chunk
                .iter()
                .map(|(period, user, occur)| values![period.clone(), user.clone(), *occur, now]),
        );
        sql.push(" ON CONFLICT (period, user_id) DO NOTHING RETURNING period, user_id");
        let rows: Vec<PeriodUserRow> = store::fetch_all(conn, &sql.text, sql.values).await?;
        inserted.extend(rows.into_iter().map(|row| (row.period, row.user_id)));
    }
    Ok(inserted)
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
    let mut keys: Vec<String> = users.iter().map(|user| user_lock_key(user)).collect();
    keys.sort_unstable();
    keys.dedup();
    for chunk in keys.chunks(CHUNK) {
        let mut sql = Sql::new(
            "SELECT pg_advisory_xact_lock(h) FROM (SELECT hashtextextended(k, 0) AS h FROM (VALUES ",
        );
        push_tuples(&mut sql, chunk.iter().map(|key| values![key.clone()]));
        sql.push(") AS v (k)) AS keys ORDER BY h");
        store::execute(conn, &sql.text, sql.values).await?;
    }
    Ok(())
}

/// The lock key of a user's billing state, as [`store::lock_key`] takes it.
pub fn user_lock_key(user_id: &str) -> String {
    format!("billing-user:{user_id}")
}

/// The memberships `(organization_id, user_id)` of `users`.
pub async fn memberships_of(
    conn: &impl ConnectionTrait,
    users: &[String],
) -> Result<Vec<(String, String)>, DbErr> {
    let mut found = Vec::new();
    for chunk in users.chunks(CHUNK) {
        let mut sql =
            Sql::new("SELECT organization_id, user_id FROM memberships WHERE user_id IN (");
        push_list(&mut sql, chunk);
        sql.push(")");
        let rows: Vec<OrganizationUserRow> = store::fetch_all(conn, &sql.text, sql.values).await?;
        found.extend(
            rows.into_iter()
                .map(|row| (row.organization_id, row.user_id)),
        );
    }
    Ok(found)
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
        let mut sql = Sql::new(
            "INSERT INTO billing_active_members (period, organization_id, user_id, create_time) VALUES ",
        );
        push_tuples(
            &mut sql,
            chunk.iter().map(|(period, organization, user)| {
                values![period.clone(), organization.clone(), user.clone(), now]
            }),
        );
        sql.push(" ON CONFLICT (period, organization_id, user_id) DO NOTHING RETURNING period, organization_id");
        let rows: Vec<PeriodOrganizationRow> =
            store::fetch_all(conn, &sql.text, sql.values).await?;
        inserted.extend(
            rows.into_iter()
                .map(|row| (row.period, row.organization_id)),
        );
    }
    Ok(inserted)
}

const USAGE_COLUMNS: &str =
    "organization_id, period, active_member_count, billable_since, billable_order";

/// Adds to the active-member counts, `(organization_id, period, increment)`
/// sorted by organization and period, creating counters as needed; returns
/// the counters after the change.
pub async fn add_to_usage(
    conn: &impl ConnectionTrait,
    increments: &[(String, String, i64)],
) -> Result<Vec<UsageRow>, DbErr> {
    let mut after = Vec::new();
    for chunk in increments.chunks(CHUNK) {
        let mut sql = Sql::new(
            "INSERT INTO billing_organization_usage (organization_id, period, active_member_count) VALUES ",
        );
        push_tuples(
            &mut sql,
            chunk.iter().map(|(organization, period, increment)| {
                values![organization.clone(), period.clone(), *increment]
            }),
        );
        sql.push(&format!(
            " ON CONFLICT (organization_id, period) DO UPDATE SET active_member_count = billing_organization_usage.active_member_count + excluded.active_member_count RETURNING {USAGE_COLUMNS}"
        ));
        after.extend(store::fetch_all::<UsageRow>(conn, &sql.text, sql.values).await?);
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
    let changed = store::execute(
        conn,
        "UPDATE billing_organization_usage SET billable_since = $1 \
         WHERE organization_id = $2 AND period = $3 AND billable_since IS NULL AND active_member_count >= $4",
        values![now, organization_id, period, threshold],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn set_billable_order(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    period: &str,
    order: i64,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "UPDATE billing_organization_usage SET billable_order = $1 WHERE organization_id = $2 AND period = $3",
        values![order, organization_id, period],
    )
    .await?;
    Ok(())
}

/// Creates the totals row of a period if absent; returns whether it did.
pub async fn ensure_period(
    conn: &impl ConnectionTrait,
    period: &str,
    now: i64,
) -> Result<bool, DbErr> {
    Ok(store::execute(
        conn,
        "INSERT INTO billing_periods (period, monthly_active_users, billable_organizations, create_time) VALUES ($1, 0, 0, $2) \
         ON CONFLICT (period) DO NOTHING",
        values![period, now],
    )
    .await?
        == 1)
}

/// Adds newly active users and newly billable organizations to a period's
/// totals; returns its billable organizations after the change.
pub async fn add_to_period(
    conn: &impl ConnectionTrait,
    period: &str,
    new_users: i64,
    new_billable: i64,
) -> Result<i64, DbErr> {
    store::fetch_i64(
        conn,
        "UPDATE billing_periods SET monthly_active_users = monthly_active_users + $1, billable_organizations = billable_organizations + $2 \
         WHERE period = $3 RETURNING billable_organizations",
        values![new_users, new_billable, period],
    )
    .await
}

pub async fn period_totals(conn: &impl ConnectionTrait, period: &str) -> Result<PeriodRow, DbErr> {
    Ok(store::fetch_optional(
        conn,
        "SELECT monthly_active_users, billable_organizations FROM billing_periods WHERE period = $1",
        values![period],
    )
    .await?
    .unwrap_or_default())
}

pub async fn usage(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    period: &str,
) -> Result<Option<UsageRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {USAGE_COLUMNS} FROM billing_organization_usage WHERE organization_id = $1 AND period = $2"),
        values![organization_id, period],
    )
    .await
}

/// Whether any billing history names the organization.
pub async fn has_history(
    conn: &impl ConnectionTrait,
    organization_id: &str,
) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM billing_organization_usage WHERE organization_id = $1",
        values![organization_id],
    )
    .await?
        > 0)
}

/// The active members of organizations in a period, `(organization_id,
/// user_id)` ordered by organization and user.
pub async fn active_members(
    conn: &impl ConnectionTrait,
    period: &str,
    organizations: &[String],
) -> Result<Vec<(String, String)>, DbErr> {
    let mut found = Vec::new();
    for chunk in organizations.chunks(CHUNK) {
        let mut sql =
            Sql::new("SELECT organization_id, user_id FROM billing_active_members WHERE period = ");
        let p = sql.bind(period.to_string());
        sql.push(&p);
        sql.push(" AND organization_id IN (");
        push_list(&mut sql, chunk);
        sql.push(") ORDER BY organization_id, user_id");
        let rows: Vec<OrganizationUserRow> = store::fetch_all(conn, &sql.text, sql.values).await?;
        found.extend(
            rows.into_iter()
                .map(|row| (row.organization_id, row.user_id)),
        );
    }
    Ok(found)
}

/// Billable organizations of a period after position `after_order`, in the
/// order they became billable.
pub async fn billable_page(
    conn: &impl ConnectionTrait,
    period: &str,
    after_order: i64,
    limit: u64,
) -> Result<Vec<UsageRow>, DbErr> {
    store::fetch_all(
        conn,
        &format!(
            "SELECT {USAGE_COLUMNS} FROM billing_organization_usage \
             WHERE period = $1 AND billable_order IS NOT NULL AND billable_order > $2 ORDER BY billable_order LIMIT $3"
        ),
        values![period, after_order, limit as i64],
    )
    .await
}

/// The aggregate behind cost drivers: per user, its billable organizations
/// in the period and how many of them have at most `threshold` active members
/// (so they would not be billable without it).
fn cost_driver_sql(sql: &mut Sql, period: &str, threshold: i64, min_organizations: i64) {
    let t = sql.bind(threshold);
    let p = sql.bind(period.to_string());
    let m = sql.bind(min_organizations);
    sql.push(&format!(
        "SELECT a.user_id AS user_id, COUNT(*) AS billable_organization_count, \
         SUM(CASE WHEN u.active_member_count <= {t} THEN 1 ELSE 0 END) AS sole_cause_count \
         FROM billing_active_members a JOIN billing_organization_usage u \
         ON u.organization_id = a.organization_id AND u.period = a.period \
         WHERE a.period = {p} AND u.billable_since IS NOT NULL \
         GROUP BY a.user_id HAVING COUNT(*) >= {m}"
    ));
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
    let mut sql = Sql::new("SELECT user_id, billable_organization_count, sole_cause_count FROM (");
    cost_driver_sql(&mut sql, period, threshold, min_organizations);
    sql.push(") AS drivers");
    if let Some((count, user)) = after {
        let c = sql.bind(count);
        let u = sql.bind(user);
        sql.push(&format!(
            " WHERE billable_organization_count < {c} OR (billable_organization_count = {c} AND user_id > {u})"
        ));
    }
    let l = sql.bind(limit as i64);
    sql.push(&format!(
        " ORDER BY billable_organization_count DESC, user_id LIMIT {l}"
    ));
    store::fetch_all(conn, &sql.text, sql.values).await
}

pub async fn count_cost_drivers(
    conn: &impl ConnectionTrait,
    period: &str,
    threshold: i64,
    min_organizations: i64,
) -> Result<i64, DbErr> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM (");
    cost_driver_sql(&mut sql, period, threshold, min_organizations);
    sql.push(") AS drivers");
    store::fetch_i64(conn, &sql.text, sql.values).await
}

pub async fn total_organizations(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    store::fetch_i64(
        conn,
        "SELECT total_organizations FROM billing_totals WHERE id = 1",
        vec![],
    )
    .await
}

/// Moves the organization counter by `delta` (+1 on create, −1 on delete).
pub async fn add_to_total_organizations(
    conn: &impl ConnectionTrait,
    delta: i64,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "UPDATE billing_totals SET total_organizations = total_organizations + $1 WHERE id = 1",
        values![delta],
    )
    .await?;
    Ok(())
}

//! The `memberships` table.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::store;
use crate::values;

/// A stored membership.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
pub struct MembershipRow {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub role: String,
    pub public_metadata: String,
    pub private_metadata: String,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
}

impl MembershipRow {
    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }
}

pub const COLUMNS: &str = "id, organization_id, user_id, role, public_metadata, private_metadata, create_time, update_time, revision";

pub async fn get(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<Option<MembershipRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM memberships WHERE organization_id = $1 AND user_id = $2"),
        values![organization_id, user_id],
    )
    .await
}

pub async fn insert(conn: &impl ConnectionTrait, row: &MembershipRow) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!("INSERT INTO memberships ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        values![
            row.id.clone(),
            row.organization_id.clone(),
            row.user_id.clone(),
            row.role.clone(),
            row.public_metadata.clone(),
            row.private_metadata.clone(),
            row.create_time,
            row.update_time,
            row.revision,
        ],
    )
    .await?;
    Ok(())
}

pub async fn update(
    conn: &impl ConnectionTrait,
    row: &MembershipRow,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE memberships SET role = $1, public_metadata = $2, private_metadata = $3, update_time = $4, revision = revision + 1 \
         WHERE id = $5 AND revision = $6",
        values![
            row.role.clone(),
            row.public_metadata.clone(),
            row.private_metadata.clone(),
            row.update_time,
            row.id.clone(),
            expected_revision,
        ],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(store::execute(conn, "DELETE FROM memberships WHERE id = $1", values![id]).await? == 1)
}

/// The role of a user in an organization with the permissions it grants, in
/// one indexed query; `None` when it is not a member.
pub async fn role_and_permissions(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<Option<(String, Vec<String>)>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        role: String,
        permission_key: Option<String>,
    }
    let rows: Vec<Row> = store::fetch_all(
        conn,
        "SELECT m.role, rp.permission_key FROM memberships m LEFT JOIN role_permissions rp ON rp.role_key = m.role \
         WHERE m.organization_id = $1 AND m.user_id = $2",
        values![organization_id, user_id],
    )
    .await?;
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    let role = first.role.clone();
    Ok(Some((
        role,
        rows.into_iter()
            .filter_map(|row| row.permission_key)
            .collect(),
    )))
}

/// Members of the organization whose role grants `permission`.
pub async fn count_with_permission(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    permission: &str,
) -> Result<i64, DbErr> {
    store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM memberships m JOIN role_permissions rp ON rp.role_key = m.role \
         WHERE m.organization_id = $1 AND rp.permission_key = $2",
        values![organization_id, permission],
    )
    .await
}

pub use crate::domain::organizations::MembershipFilter;

fn filter_sql(sql: &mut store::Sql, filter: &MembershipFilter) {
    sql.push(" WHERE 1 = 1");
    if let Some(organization_id) = &filter.organization_id {
        let p = sql.bind(organization_id.as_str());
        sql.push(&format!(" AND organization_id = {p}"));
    }
    if let Some(user_id) = &filter.user_id {
        let p = sql.bind(user_id.as_str());
        sql.push(&format!(" AND user_id = {p}"));
    }
    if let Some(role) = &filter.role {
        let p = sql.bind(role.as_str());
        sql.push(&format!(" AND role = {p}"));
    }
}

pub async fn count(conn: &impl ConnectionTrait, filter: &MembershipFilter) -> Result<i64, DbErr> {
    let mut sql = store::Sql::new("SELECT COUNT(*) FROM memberships");
    filter_sql(&mut sql, filter);
    store::fetch_i64(conn, &sql.text, sql.values).await
}

/// One page in creation order, after the keyset position `(create_time, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &MembershipFilter,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<MembershipRow>, DbErr> {
    let mut sql = store::Sql::new(&format!("SELECT {COLUMNS} FROM memberships"));
    filter_sql(&mut sql, filter);
    if let Some((time, id)) = after {
        let t = sql.bind(time);
        let i = sql.bind(id);
        sql.push(&format!(
            " AND (create_time > {t} OR (create_time = {t} AND id > {i}))"
        ));
    }
    let l = sql.bind(limit as i64);
    sql.push(&format!(" ORDER BY create_time, id LIMIT {l}"));
    store::fetch_all(conn, &sql.text, sql.values).await
}

//! The `organizations` table.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::store::{self, Sql, for_update};
use crate::values;

/// A stored organization.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
pub struct OrganizationRow {
    pub id: String,
    pub name: String,
    pub slug: String,
    pub created_by: Option<String>,
    pub max_allowed_memberships: i32,
    pub members_count: i32,
    pub pending_invitations_count: i32,
    pub public_metadata: String,
    pub private_metadata: String,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
}

impl OrganizationRow {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// The etag of a revision: opaque to clients.
pub fn etag(revision: i64) -> String {
    format!("\"r{revision}\"")
}

pub const COLUMNS: &str = "id, name, slug, created_by, max_allowed_memberships, members_count, pending_invitations_count, public_metadata, private_metadata, create_time, update_time, revision";

pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<OrganizationRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM organizations WHERE id = $1"),
        values![id],
    )
    .await
}

/// Reads the organization and locks it for the rest of the transaction, so
/// changes to its memberships are serialized.
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<OrganizationRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM organizations WHERE id = $1{}",
            for_update(conn)
        ),
        values![id],
    )
    .await
}

/// The organization with id or slug `key` and the role of `user_id` in it, if
/// it is a member: one indexed query.
pub async fn get_as_member(
    conn: &impl ConnectionTrait,
    by_slug: bool,
    key: &str,
    user_id: &str,
) -> Result<Option<(OrganizationRow, String)>, DbErr> {
    let columns: Vec<String> = COLUMNS.split(", ").map(|c| format!("o.{c}")).collect();
    let column = if by_slug { "slug" } else { "id" };
    let stmt = store::statement(
        conn,
        &format!(
            "SELECT {}, m.role AS member_role FROM organizations o JOIN memberships m ON m.organization_id = o.id AND m.user_id = $2 WHERE o.{column} = $1",
            columns.join(", ")
        ),
        values![key, user_id],
    );
    match conn.query_one_raw(stmt).await? {
        Some(result) => {
            let row = OrganizationRow::from_query_result(&result, "")?;
            let role: String = result.try_get("", "member_role")?;
            Ok(Some((row, role)))
        }
        None => Ok(None),
    }
}

pub async fn get_by_slug(
    conn: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<OrganizationRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM organizations WHERE slug = $1"),
        values![slug],
    )
    .await
}

pub async fn slug_taken(conn: &impl ConnectionTrait, slug: &str) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM organizations WHERE slug = $1",
        values![slug],
    )
    .await?
        > 0)
}

pub async fn count_created_by(conn: &impl ConnectionTrait, user_id: &str) -> Result<i64, DbErr> {
    store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM organizations WHERE created_by = $1",
        values![user_id],
    )
    .await
}

pub async fn insert(conn: &impl ConnectionTrait, row: &OrganizationRow) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!("INSERT INTO organizations ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
        values![
            row.id.clone(),
            row.name.clone(),
            row.slug.clone(),
            row.created_by.clone(),
            row.max_allowed_memberships,
            row.members_count,
            row.pending_invitations_count,
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

/// Writes the updatable fields if the stored revision is `expected_revision`;
/// returns whether it did.
pub async fn update(
    conn: &impl ConnectionTrait,
    row: &OrganizationRow,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE organizations SET name = $1, slug = $2, max_allowed_memberships = $3, public_metadata = $4, private_metadata = $5, update_time = $6, revision = revision + 1 \
         WHERE id = $7 AND revision = $8",
        values![
            row.name.clone(),
            row.slug.clone(),
            row.max_allowed_memberships,
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

/// Takes one membership place if the organization has room; returns whether it
/// did. The condition is evaluated on the locked row, so concurrent adds can
/// never go past `max_allowed_memberships`.
pub async fn take_membership_place(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE organizations SET members_count = members_count + 1 \
         WHERE id = $1 AND (max_allowed_memberships = 0 OR members_count < max_allowed_memberships)",
        values![id],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn release_membership_place(conn: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    store::execute(
        conn,
        "UPDATE organizations SET members_count = members_count - 1 WHERE id = $1 AND members_count > 0",
        values![id],
    )
    .await?;
    Ok(())
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(store::execute(conn, "DELETE FROM organizations WHERE id = $1", values![id]).await? == 1)
}

pub use crate::domain::organizations::{OrganizationFilter, OrganizationOrder};

/// The sort column of an order and whether it descends.
fn order_column(order: OrganizationOrder) -> (&'static str, bool) {
    match order {
        OrganizationOrder::CreateTime => ("create_time", false),
        OrganizationOrder::CreateTimeDesc => ("create_time", true),
        OrganizationOrder::Name => ("name", false),
        OrganizationOrder::MembersCountDesc => ("members_count", true),
    }
}

fn filter_sql(sql: &mut Sql, filter: &OrganizationFilter) {
    sql.push(" WHERE 1 = 1");
    if let Some(query) = &filter.query {
        let pattern = store::like_pattern(&query.to_lowercase());
        let p = sql.bind(pattern);
        sql.push(&format!(
            " AND (LOWER(name) LIKE {p} ESCAPE '\\' OR slug LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(member) = &filter.member {
        let p = sql.bind(member.as_str());
        sql.push(&format!(
            " AND id IN (SELECT organization_id FROM memberships WHERE user_id = {p})"
        ));
    }
}

pub async fn count(conn: &impl ConnectionTrait, filter: &OrganizationFilter) -> Result<i64, DbErr> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM organizations");
    filter_sql(&mut sql, filter);
    store::fetch_i64(conn, &sql.text, sql.values).await
}

/// One page after the keyset position `after` (from [`OrganizationOrder::key_of`]).
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &OrganizationFilter,
    order: OrganizationOrder,
    after: Option<&[String]>,
    limit: u64,
) -> Result<Vec<OrganizationRow>, DbErr> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM organizations"));
    filter_sql(&mut sql, filter);
    let (column, descending) = order_column(order);
    if let Some([value, id]) = after {
        let value: sea_orm::Value = if column == "name" {
            value.clone().into()
        } else {
            value.parse::<i64>().unwrap_or_default().into()
        };
        let v = sql.bind(value);
        let i = sql.bind(id.clone());
        let op = if descending { "<" } else { ">" };
        sql.push(&format!(
            " AND ({column} {op} {v} OR ({column} = {v} AND id {op} {i}))"
        ));
    }
    let direction = if descending { "DESC" } else { "ASC" };
    let l = sql.bind(limit as i64);
    sql.push(&format!(
        " ORDER BY {column} {direction}, id {direction} LIMIT {l}"
    ));
    store::fetch_all(conn, &sql.text, sql.values).await
}

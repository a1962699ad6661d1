//! The `roles`, `permissions` and `role_permissions` tables.

use std::collections::BTreeMap;

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::store;
use crate::values;

/// A stored role with its permission keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoleRecord {
    pub id: String,
    pub key: String,
    pub name: String,
    pub description: String,
    pub built_in: bool,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
    pub permissions: Vec<String>,
}

impl RoleRecord {
    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }
}

#[derive(Debug, Clone, FromQueryResult)]
struct RoleRow {
    id: String,
    key: String,
    name: String,
    description: String,
    built_in: bool,
    create_time: i64,
    update_time: i64,
    revision: i64,
}

/// A stored permission.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
pub struct PermissionRow {
    pub id: String,
    pub key: String,
    pub name: String,
    pub description: String,
    pub system: bool,
    pub create_time: i64,
}

const ROLE_COLUMNS: &str =
    "id, key, name, description, built_in, create_time, update_time, revision";
const PERMISSION_COLUMNS: &str = "id, key, name, description, system, create_time";

/// The permissions each of the roles `keys` grants, in one query.
pub async fn permissions_of(
    conn: &impl ConnectionTrait,
    keys: &[String],
) -> Result<BTreeMap<String, Vec<String>>, DbErr> {
    #[derive(FromQueryResult)]
    struct Grant {
        role_key: String,
        permission_key: String,
    }
    let mut by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if keys.is_empty() {
        return Ok(by_role);
    }
    let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    let grants: Vec<Grant> = store::fetch_all(
        conn,
        &format!(
            "SELECT role_key, permission_key FROM role_permissions WHERE role_key IN ({}) ORDER BY permission_key",
            placeholders.join(", ")
        ),
        keys.iter().map(|key| sea_orm::Value::from(key.clone())).collect(),
    )
    .await?;
    for grant in grants {
        by_role
            .entry(grant.role_key)
            .or_default()
            .push(grant.permission_key);
    }
    Ok(by_role)
}

async fn with_permissions(
    conn: &impl ConnectionTrait,
    rows: Vec<RoleRow>,
) -> Result<Vec<RoleRecord>, DbErr> {
    let keys: Vec<String> = rows.iter().map(|row| row.key.clone()).collect();
    let mut by_role = permissions_of(conn, &keys).await?;
    Ok(rows
        .into_iter()
        .map(|row| RoleRecord {
            permissions: by_role.remove(&row.key).unwrap_or_default(),
            id: row.id,
            key: row.key,
            name: row.name,
            description: row.description,
            built_in: row.built_in,
            create_time: row.create_time,
            update_time: row.update_time,
            revision: row.revision,
        })
        .collect())
}

pub async fn get_role(conn: &impl ConnectionTrait, key: &str) -> Result<Option<RoleRecord>, DbErr> {
    let rows: Vec<RoleRow> = store::fetch_all(
        conn,
        &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE key = $1"),
        values![key],
    )
    .await?;
    Ok(with_permissions(conn, rows).await?.into_iter().next())
}

/// Roles ordered by key, after `after` (exclusive), at most `limit`.
pub async fn list_roles(
    conn: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<RoleRecord>, DbErr> {
    let rows: Vec<RoleRow> = store::fetch_all(
        conn,
        &format!("SELECT {ROLE_COLUMNS} FROM roles WHERE key > $1 ORDER BY key LIMIT $2"),
        values![after.unwrap_or(""), limit as i64],
    )
    .await?;
    with_permissions(conn, rows).await
}

pub async fn count_roles(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    store::fetch_i64(conn, "SELECT COUNT(*) FROM roles", vec![]).await
}

pub async fn insert_role(conn: &impl ConnectionTrait, role: &RoleRecord) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!("INSERT INTO roles ({ROLE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"),
        values![
            role.id.clone(),
            role.key.clone(),
            role.name.clone(),
            role.description.clone(),
            role.built_in,
            role.create_time,
            role.update_time,
            role.revision,
        ],
    )
    .await?;
    set_permissions(conn, &role.key, &role.permissions).await
}

pub async fn update_role(
    conn: &impl ConnectionTrait,
    role: &RoleRecord,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE roles SET name = $1, description = $2, update_time = $3, revision = revision + 1 WHERE key = $4 AND revision = $5",
        values![role.name.clone(), role.description.clone(), role.update_time, role.key.clone(), expected_revision],
    )
    .await?;
    if changed != 1 {
        return Ok(false);
    }
    store::execute(
        conn,
        "DELETE FROM role_permissions WHERE role_key = $1",
        values![role.key.clone()],
    )
    .await?;
    set_permissions(conn, &role.key, &role.permissions).await?;
    Ok(true)
}

async fn set_permissions(
    conn: &impl ConnectionTrait,
    role_key: &str,
    permissions: &[String],
) -> Result<(), DbErr> {
    for permission in permissions {
        store::execute(
            conn,
            "INSERT INTO role_permissions (role_key, permission_key) VALUES ($1, $2)",
            values![role_key, permission.clone()],
        )
        .await?;
    }
    Ok(())
}

pub async fn delete_role(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    Ok(store::execute(conn, "DELETE FROM roles WHERE key = $1", values![key]).await? == 1)
}

/// Whether any membership or pending invitation holds the role.
pub async fn role_in_use(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    let memberships = store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM memberships WHERE role = $1",
        values![key],
    )
    .await?;
    let invitations = store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM invitations WHERE role = $1 AND status = 'pending'",
        values![key],
    )
    .await?;
    Ok(memberships + invitations > 0)
}

pub async fn get_permission(
    conn: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<PermissionRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {PERMISSION_COLUMNS} FROM permissions WHERE key = $1"),
        values![key],
    )
    .await
}

/// The keys among `keys` that exist.
pub async fn existing_permissions(
    conn: &impl ConnectionTrait,
    keys: &[String],
) -> Result<Vec<String>, DbErr> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(FromQueryResult)]
    struct Key {
        key: String,
    }
    let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("${i}")).collect();
    let rows: Vec<Key> = store::fetch_all(
        conn,
        &format!(
            "SELECT key FROM permissions WHERE key IN ({})",
            placeholders.join(", ")
        ),
        keys.iter()
            .map(|k| sea_orm::Value::from(k.clone()))
            .collect(),
    )
    .await?;
    Ok(rows.into_iter().map(|row| row.key).collect())
}

pub async fn list_permissions(
    conn: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<PermissionRow>, DbErr> {
    store::fetch_all(
        conn,
        &format!(
            "SELECT {PERMISSION_COLUMNS} FROM permissions WHERE key > $1 ORDER BY key LIMIT $2"
        ),
        values![after.unwrap_or(""), limit as i64],
    )
    .await
}

pub async fn count_permissions(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    store::fetch_i64(conn, "SELECT COUNT(*) FROM permissions", vec![]).await
}

pub async fn insert_permission(
    conn: &impl ConnectionTrait,
    row: &PermissionRow,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!("INSERT INTO permissions ({PERMISSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6)"),
        values![
            row.id.clone(),
            row.key.clone(),
            row.name.clone(),
            row.description.clone(),
            row.system,
            row.create_time
        ],
    )
    .await?;
    Ok(())
}

pub async fn permission_in_use(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM role_permissions WHERE permission_key = $1",
        values![key],
    )
    .await?
        > 0)
}

pub async fn delete_permission(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    Ok(store::execute(conn, "DELETE FROM permissions WHERE key = $1", values![key]).await? == 1)
}

/// Whether some organization has members holding `org:sys_memberships:manage`
/// only through the role `key`: taking the permission from the role would
/// leave it without one.
pub async fn sole_managers_hold(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    let count = store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM memberships m WHERE m.role = $1 AND NOT EXISTS ( \
             SELECT 1 FROM memberships other JOIN role_permissions rp ON rp.role_key = other.role \
             WHERE other.organization_id = m.organization_id AND other.role <> $1 AND rp.permission_key = $2)",
        values![key, crate::domain::roles::MEMBERSHIPS_MANAGE],
    )
    .await?;
    Ok(count > 0)
}

/// Whether the role `role_key` grants `permission`.
pub async fn grants(
    conn: &impl ConnectionTrait,
    role_key: &str,
    permission: &str,
) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM role_permissions WHERE role_key = $1 AND permission_key = $2",
        values![role_key, permission],
    )
    .await?
        > 0)
}

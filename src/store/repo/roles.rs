//! The `roles`, `permissions` and `role_permissions` tables.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};

use crate::store::entity::{invitations, memberships, permissions, role_permissions, roles};
use crate::store::query::{self, eq_literal, literal};

/// The lock that orders changes of the role catalogue (roles and the
/// permissions they grant) against changes that rely on it (memberships and
/// invitations holding a role, the last-admin rule).
pub(crate) const CATALOGUE_LOCK: &str = "role-catalogue";

/// Takes the catalogue lock exclusively, first in the transaction: a change of
/// roles or permissions waits for every membership change in flight, and they
/// for it, so neither checks its rule against what the other is changing
/// (a role deleted while a membership takes it; a role losing the manage
/// permission while the last admin is demoted).
pub async fn lock_catalogue_for_change(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    crate::store::lock_key(conn, CATALOGUE_LOCK).await
}

/// Takes the catalogue lock shared: membership changes run side by side, but
/// not alongside a change of the catalogue.
pub async fn lock_catalogue_for_use(conn: &impl ConnectionTrait) -> Result<(), DbErr> {
    crate::store::lock_key_shared(conn, CATALOGUE_LOCK).await
}

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
    /// A stored role row with its permission keys.
    fn from_row(row: roles::Model, permissions: Vec<String>) -> RoleRecord {
        RoleRecord {
            id: row.id,
            key: row.key,
            name: row.name,
            description: row.description,
            built_in: row.built_in,
            create_time: row.create_time,
            update_time: row.update_time,
            revision: row.revision,
            permissions,
        }
    }

    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }
}

/// A stored permission: a whole `permissions` row.
pub type PermissionRow = permissions::Model;

/// The permissions each of the roles `keys` grants, in one query.
pub async fn permissions_of(
    conn: &impl ConnectionTrait,
    keys: &[String],
) -> Result<BTreeMap<String, Vec<String>>, DbErr> {
    let mut by_role: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if keys.is_empty() {
        return Ok(by_role);
    }
    let grants = role_permissions::Entity::find()
        .filter(role_permissions::Column::RoleKey.is_in(keys.iter().map(String::as_str)))
        .order_by_asc(role_permissions::Column::PermissionKey)
        .all(conn)
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
    rows: Vec<roles::Model>,
) -> Result<Vec<RoleRecord>, DbErr> {
    let keys: Vec<String> = rows.iter().map(|row| row.key.clone()).collect();
    let mut by_role = permissions_of(conn, &keys).await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let permissions = by_role.remove(&row.key).unwrap_or_default();
            RoleRecord::from_row(row, permissions)
        })
        .collect())
}

/// The role `key` with its permissions, in one query (a join).
pub async fn get_role(conn: &impl ConnectionTrait, key: &str) -> Result<Option<RoleRecord>, DbErr> {
    let found = roles::Entity::find()
        .filter(roles::Column::Key.eq(key))
        .find_with_related(role_permissions::Entity)
        .order_by_asc(role_permissions::Column::PermissionKey)
        .all(conn)
        .await?;
    Ok(found.into_iter().next().map(|(row, grants)| {
        let permissions = grants
            .into_iter()
            .map(|grant| grant.permission_key)
            .collect();
        RoleRecord::from_row(row, permissions)
    }))
}

/// Roles ordered by key, after `after` (exclusive), at most `limit`.
pub async fn list_roles(
    conn: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<RoleRecord>, DbErr> {
    let rows = roles::Entity::find()
        .filter(roles::Column::Key.gt(after.unwrap_or("")))
        .order_by_asc(roles::Column::Key)
        .limit(limit)
        .all(conn)
        .await?;
    with_permissions(conn, rows).await
}

pub async fn count_roles(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    query::count(conn, roles::Entity::find()).await
}

pub async fn insert_role(conn: &impl ConnectionTrait, role: &RoleRecord) -> Result<(), DbErr> {
    roles::Entity::insert(roles::ActiveModel {
        id: Set(role.id.clone()),
        key: Set(role.key.clone()),
        name: Set(role.name.clone()),
        description: Set(role.description.clone()),
        built_in: Set(role.built_in),
        create_time: Set(role.create_time),
        update_time: Set(role.update_time),
        revision: Set(role.revision),
    })
    .exec_without_returning(conn)
    .await?;
    set_permissions(conn, &role.key, &role.permissions).await
}

pub async fn update_role(
    conn: &impl ConnectionTrait,
    role: &RoleRecord,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let changed = roles::Entity::update_many()
        .col_expr(roles::Column::Name, Expr::value(role.name.clone()))
        .col_expr(
            roles::Column::Description,
            Expr::value(role.description.clone()),
        )
        .col_expr(roles::Column::UpdateTime, Expr::value(role.update_time))
        .col_expr(
            roles::Column::Revision,
            Expr::col(roles::Column::Revision).add(1),
        )
        .filter(roles::Column::Key.eq(role.key.as_str()))
        .filter(roles::Column::Revision.eq(expected_revision))
        .exec(conn)
        .await?
        .rows_affected;
    if changed != 1 {
        return Ok(false);
    }
    role_permissions::Entity::delete_many()
        .filter(role_permissions::Column::RoleKey.eq(role.key.as_str()))
        .exec(conn)
        .await?;
    set_permissions(conn, &role.key, &role.permissions).await?;
    Ok(true)
}

/// Grants `permissions` to the role, in one multi-row insert.
async fn set_permissions(
    conn: &impl ConnectionTrait,
    role_key: &str,
    permissions: &[String],
) -> Result<(), DbErr> {
    role_permissions::Entity::insert_many(permissions.iter().map(|permission| {
        role_permissions::ActiveModel {
            role_key: Set(role_key.to_string()),
            permission_key: Set(permission.clone()),
        }
    }))
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn delete_role(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    Ok(roles::Entity::delete_many()
        .filter(roles::Column::Key.eq(key))
        .exec(conn)
        .await?
        .rows_affected
        == 1)
}

/// Whether any membership or pending invitation holds the role.
pub async fn role_in_use(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    let memberships = query::count(
        conn,
        memberships::Entity::find().filter(memberships::Column::Role.eq(key)),
    )
    .await?;
    let invitations = query::count(
        conn,
        invitations::Entity::find()
            .filter(invitations::Column::Role.eq(key))
            .filter(eq_literal(invitations::Column::Status, "pending")),
    )
    .await?;
    Ok(memberships + invitations > 0)
}

pub async fn get_permission(
    conn: &impl ConnectionTrait,
    key: &str,
) -> Result<Option<PermissionRow>, DbErr> {
    permissions::Entity::find()
        .filter(permissions::Column::Key.eq(key))
        .one(conn)
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
    permissions::Entity::find()
        .select_only()
        .column(permissions::Column::Key)
        .filter(permissions::Column::Key.is_in(keys.iter().map(String::as_str)))
        .into_tuple()
        .all(conn)
        .await
}

pub async fn list_permissions(
    conn: &impl ConnectionTrait,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<PermissionRow>, DbErr> {
    permissions::Entity::find()
        .filter(permissions::Column::Key.gt(after.unwrap_or("")))
        .order_by_asc(permissions::Column::Key)
        .limit(limit)
        .all(conn)
        .await
}

pub async fn count_permissions(conn: &impl ConnectionTrait) -> Result<i64, DbErr> {
    query::count(conn, permissions::Entity::find()).await
}

pub async fn insert_permission(
    conn: &impl ConnectionTrait,
    row: &PermissionRow,
) -> Result<(), DbErr> {
    permissions::Entity::insert(row.clone().into_active_model())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn permission_in_use(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    query::any(
        conn,
        role_permissions::Entity::find().filter(role_permissions::Column::PermissionKey.eq(key)),
    )
    .await
}

pub async fn delete_permission(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    Ok(permissions::Entity::delete_many()
        .filter(permissions::Column::Key.eq(key))
        .exec(conn)
        .await?
        .rows_affected
        == 1)
}

/// Whether some organization has members holding `org:sys_memberships:manage`
/// only through the role `key`: taking the permission from the role would
/// leave it without one.
pub async fn sole_managers_hold(conn: &impl ConnectionTrait, key: &str) -> Result<bool, DbErr> {
    use memberships::Column as M;
    use role_permissions::Column as Rp;
    // Another member of the same organization, with another role that grants
    // the permission.
    let other = Alias::new("other");
    let other_manager = Query::select()
        .expr(literal(1))
        .from_as(memberships::Entity, other.clone())
        .inner_join(
            role_permissions::Entity,
            Expr::col((role_permissions::Entity, Rp::RoleKey)).equals((other.clone(), M::Role)),
        )
        .and_where(
            Expr::col((other.clone(), M::OrganizationId))
                .equals((memberships::Entity, M::OrganizationId)),
        )
        .and_where(Expr::col((other, M::Role)).ne(key))
        .and_where(
            Expr::col((role_permissions::Entity, Rp::PermissionKey))
                .eq(crate::domain::roles::MEMBERSHIPS_MANAGE),
        )
        .to_owned();
    query::any(
        conn,
        memberships::Entity::find()
            .filter(M::Role.eq(key))
            .filter(Expr::not_exists(other_manager)),
    )
    .await
}

/// Whether the role `role_key` grants `permission`.
pub async fn grants(
    conn: &impl ConnectionTrait,
    role_key: &str,
    permission: &str,
) -> Result<bool, DbErr> {
    query::any(
        conn,
        role_permissions::Entity::find()
            .filter(role_permissions::Column::RoleKey.eq(role_key))
            .filter(role_permissions::Column::PermissionKey.eq(permission)),
    )
    .await
}

//! The `memberships` table.

use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, JoinType,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait, RelationTrait, Select,
};

use crate::store::entity::{memberships, organizations, role_permissions};
use crate::store::query;

use memberships::{Column, Entity};

/// A stored membership: a whole `memberships` row.
pub type MembershipRow = memberships::Model;

impl MembershipRow {
    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }
}

pub async fn get(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<Option<MembershipRow>, DbErr> {
    Entity::find()
        .filter(Column::OrganizationId.eq(organization_id))
        .filter(Column::UserId.eq(user_id))
        .one(conn)
        .await
}

/// Inserts the membership unless the user is a member of the organization
/// already (then nothing, and false): the statement decides, so on
/// PostgreSQL the transaction goes on either way.
pub async fn insert_new(conn: &impl ConnectionTrait, row: &MembershipRow) -> Result<bool, DbErr> {
    let inserted = Entity::insert(row.clone().into_active_model())
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn insert(conn: &impl ConnectionTrait, row: &MembershipRow) -> Result<(), DbErr> {
    Entity::insert(row.clone().into_active_model())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn update(
    conn: &impl ConnectionTrait,
    row: &MembershipRow,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Role, Expr::value(row.role.clone()))
        .col_expr(
            Column::PublicMetadata,
            Expr::value(row.public_metadata.clone()),
        )
        .col_expr(
            Column::PrivateMetadata,
            Expr::value(row.private_metadata.clone()),
        )
        .col_expr(Column::UpdateTime, Expr::value(row.update_time))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(row.id.as_str()))
        .filter(Column::Revision.eq(expected_revision))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deactivates (`Some(time)`) or reactivates (`None`) a membership if the
/// stored revision is `expected_revision`; returns whether it did.
pub async fn set_deactivate_time(
    conn: &impl ConnectionTrait,
    id: &str,
    deactivate_time: Option<i64>,
    now: i64,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::DeactivateTime, Expr::value(deactivate_time))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(id))
        .filter(Column::Revision.eq(expected_revision))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(Entity::delete_by_id(id).exec(conn).await?.rows_affected == 1)
}

/// The role of a user in an organization with the permissions it grants, in
/// one indexed query; `None` when it is not an active member of an active
/// organization (a deactivated membership or organization grants nothing).
pub async fn role_and_permissions(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<Option<(String, Vec<String>)>, DbErr> {
    let rows: Vec<(String, Option<String>)> = Entity::find()
        .select_only()
        .column(Column::Role)
        .column(role_permissions::Column::PermissionKey)
        .join(JoinType::LeftJoin, memberships::role_grants())
        .join(
            JoinType::InnerJoin,
            memberships::Relation::Organizations.def(),
        )
        .filter(Column::OrganizationId.eq(organization_id))
        .filter(Column::UserId.eq(user_id))
        .filter(Column::DeactivateTime.is_null())
        .filter(organizations::Column::DeactivateTime.is_null())
        .into_tuple()
        .all(conn)
        .await?;
    let Some((role, _)) = rows.first() else {
        return Ok(None);
    };
    let role = role.clone();
    Ok(Some((
        role,
        rows.into_iter()
            .filter_map(|(_, permission)| permission)
            .collect(),
    )))
}

/// Active memberships with their roles (of active organizations or not:
/// see [`super::organizations::deactivated_among`]), ordered by organization
/// and user, after `after` (exclusive), at most `limit`: the access cache
/// reads them in pages when it warms up. One index range, no join, so that
/// each page costs the same however far the reading has come.
pub async fn active_roles_after(
    conn: &impl ConnectionTrait,
    after: Option<(&str, &str)>,
    limit: u64,
) -> Result<Vec<(String, String, String)>, DbErr> {
    let mut select = Entity::find()
        .select_only()
        .column(Column::OrganizationId)
        .column(Column::UserId)
        .column(Column::Role)
        .filter(Column::DeactivateTime.is_null());
    if let Some((organization_id, user_id)) = after {
        // A row value, so that the scan of the unique index starts there.
        select = select.filter(
            Expr::tuple([Expr::col(Column::OrganizationId), Expr::col(Column::UserId)]).gt(
                Expr::tuple([Expr::value(organization_id), Expr::value(user_id)]),
            ),
        );
    }
    select
        .order_by_asc(Column::OrganizationId)
        .order_by_asc(Column::UserId)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await
}

/// Active members of the organization whose role grants `permission`.
pub async fn count_with_permission(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    permission: &str,
) -> Result<i64, DbErr> {
    query::count(
        conn,
        Entity::find()
            .join(JoinType::InnerJoin, memberships::role_grants())
            .filter(Column::OrganizationId.eq(organization_id))
            .filter(Column::DeactivateTime.is_null())
            .filter(role_permissions::Column::PermissionKey.eq(permission)),
    )
    .await
}

pub use crate::domain::organizations::{LifecycleState, MembershipFilter};

fn filtered(filter: &MembershipFilter) -> Select<Entity> {
    Entity::find()
        .apply_if(filter.organization_id.as_deref(), |select, id| {
            select.filter(Column::OrganizationId.eq(id))
        })
        .apply_if(filter.user_id.as_deref(), |select, user| {
            select.filter(Column::UserId.eq(user))
        })
        .apply_if(filter.role.as_deref(), |select, role| {
            select.filter(Column::Role.eq(role))
        })
        .apply_if(filter.state, |select, state| match state {
            LifecycleState::Active => select.filter(Column::DeactivateTime.is_null()),
            LifecycleState::Deactivated => select.filter(Column::DeactivateTime.is_not_null()),
        })
}

pub async fn count(conn: &impl ConnectionTrait, filter: &MembershipFilter) -> Result<i64, DbErr> {
    query::count(conn, filtered(filter)).await
}

/// One page in creation order, after the keyset position `(create_time, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &MembershipFilter,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<MembershipRow>, DbErr> {
    filtered(filter)
        .apply_if(after, |select, (time, id)| {
            select.filter(
                Condition::any().add(Column::CreateTime.gt(time)).add(
                    Condition::all()
                        .add(Column::CreateTime.eq(time))
                        .add(Column::Id.gt(id)),
                ),
            )
        })
        .order_by_asc(Column::CreateTime)
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

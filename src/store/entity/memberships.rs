//! `memberships`: one row per (organization, user), with the key of its role.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "memberships")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(column_type = "Text")]
    pub user_id: String,
    /// The key of a role.
    #[sea_orm(column_type = "Text")]
    pub role: String,
    #[sea_orm(column_type = "Text")]
    pub public_metadata: String,
    #[sea_orm(column_type = "Text")]
    pub private_metadata: String,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
    /// When it was deactivated; `None` while active.
    pub deactivate_time: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::organizations::Entity",
        from = "Column::OrganizationId",
        to = "super::organizations::Column::Id",
        on_delete = "Cascade"
    )]
    Organizations,
    #[sea_orm(
        belongs_to = "super::roles::Entity",
        from = "Column::Role",
        to = "super::roles::Column::Key"
    )]
    Roles,
}

impl Related<super::organizations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organizations.def()
    }
}

impl Related<super::roles::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Roles.def()
    }
}

/// The grants of the membership's role: `role_permissions.role_key =
/// memberships.role`. Both columns hold a role key, so the join skips `roles`
/// (no foreign key links the two tables directly).
pub fn role_grants() -> RelationDef {
    Entity::belongs_to(super::role_permissions::Entity)
        .from(Column::Role)
        .to(super::role_permissions::Column::RoleKey)
        .into()
}

impl ActiveModelBehavior for ActiveModel {}

//! `billing_active_members`: who counts as an active member of which
//! organization in which period.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "billing_active_members")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub period: String,
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub user_id: String,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

/// The counters of the member's organization in the same period:
/// `billing_organization_usage` on (organization_id, period). Billing tables
/// declare no foreign keys.
pub fn usage() -> RelationDef {
    Entity::belongs_to(super::billing_organization_usage::Entity)
        .from((Column::OrganizationId, Column::Period))
        .to((
            super::billing_organization_usage::Column::OrganizationId,
            super::billing_organization_usage::Column::Period,
        ))
        .into()
}

impl ActiveModelBehavior for ActiveModel {}

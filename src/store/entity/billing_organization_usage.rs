//! `billing_organization_usage`: the counters of one organization in one
//! period; `billable_since` is set once, when it became billable, and
//! `billable_order` is its place among the period's billable organizations.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "billing_organization_usage")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub period: String,
    pub active_member_count: i64,
    #[sea_orm(nullable)]
    pub billable_since: Option<i64>,
    #[sea_orm(nullable)]
    pub billable_order: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

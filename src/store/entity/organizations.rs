//! `organizations`: one row per organization, with its member counters and a
//! revision for optimistic concurrency.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "organizations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub name: String,
    #[sea_orm(column_type = "Text", unique)]
    pub slug: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub created_by: Option<String>,
    /// 0: no limit.
    pub max_allowed_memberships: i32,
    pub members_count: i32,
    pub pending_invitations_count: i32,
    #[sea_orm(column_type = "Text")]
    pub public_metadata: String,
    #[sea_orm(column_type = "Text")]
    pub private_metadata: String,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
    /// The organization's id in another system; unique when set.
    #[sea_orm(column_type = "Text", nullable)]
    pub external_id: Option<String>,
    /// When it was deactivated; `None` while active.
    pub deactivate_time: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::memberships::Entity")]
    Memberships,
    #[sea_orm(has_many = "super::invitations::Entity")]
    Invitations,
    #[sea_orm(has_many = "super::domains::Entity")]
    Domains,
    #[sea_orm(has_many = "super::membership_requests::Entity")]
    MembershipRequests,
}

impl Related<super::memberships::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Memberships.def()
    }
}

impl Related<super::invitations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Invitations.def()
    }
}

impl Related<super::domains::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Domains.def()
    }
}

impl Related<super::membership_requests::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::MembershipRequests.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

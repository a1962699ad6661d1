//! `invitations`: organization invitations, and application invitations
//! (`organization_id` NULL). Only the SHA-256 of a token is stored.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "invitations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub organization_id: Option<String>,
    #[sea_orm(column_type = "Text")]
    pub email_address: String,
    /// A role key, or empty for an application invitation.
    #[sea_orm(column_type = "Text")]
    pub role: String,
    #[sea_orm(column_type = "Text")]
    pub status: String,
    #[sea_orm(column_type = "Text")]
    pub inviter_user_id: String,
    #[sea_orm(column_type = "Text")]
    pub redirect_url: String,
    #[sea_orm(column_type = "Text")]
    pub public_metadata: String,
    #[sea_orm(column_type = "Text")]
    pub private_metadata: String,
    #[sea_orm(column_type = "Text", unique)]
    pub token_hash: String,
    pub expire_time: i64,
    #[sea_orm(column_type = "Text")]
    pub accepted_user_id: String,
    pub create_time: i64,
    pub update_time: i64,
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
}

impl Related<super::organizations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organizations.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

//! `domains`: an organization's domains; an outstanding verification code is
//! stored only as a hash.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "domains")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(column_type = "Text", unique)]
    pub name: String,
    #[sea_orm(column_type = "Text")]
    pub enrollment_mode: String,
    pub verified: bool,
    #[sea_orm(column_type = "Text")]
    pub affiliation_email_address: String,
    #[sea_orm(nullable)]
    pub verify_time: Option<i64>,
    #[sea_orm(column_type = "Text", nullable)]
    pub code_hash: Option<String>,
    #[sea_orm(nullable)]
    pub code_expire_time: Option<i64>,
    pub code_attempts: i32,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
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

//! `domains`: the domains organizations claim. A name is unique only among
//! verified domains (the partial unique index `domains_verified_name`) and
//! within one organization; an outstanding verification code is stored only
//! as a keyed hash.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "domains")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false, column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(column_type = "Text")]
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
    /// `email_code` or `dns_txt`.
    #[sea_orm(column_type = "Text")]
    pub verification_strategy: String,
    /// The value the DNS TXT challenge record must hold, once prepared.
    #[sea_orm(column_type = "Text", nullable)]
    pub dns_token: Option<String>,
    /// Verification is refused until then (too many failed attempts).
    #[sea_orm(nullable)]
    pub locked_until: Option<i64>,
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
    #[sea_orm(has_many = "super::domain_verification_attempts::Entity")]
    Attempts,
}

impl Related<super::domain_verification_attempts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Attempts.def()
    }
}

impl Related<super::organizations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Organizations.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}

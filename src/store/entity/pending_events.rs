//! `pending_events`: where versions before migration 14 staged the events
//! of a change on PostgreSQL, to be numbered and moved into `events` after
//! its commit. This version writes events straight into `events`; a trigger
//! moves what a replica of an earlier version stages during a rolling
//! upgrade, so the table stays empty. Unused on SQLite.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "pending_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub pending_id: i64,
    /// Unique in `events`, where it is checked; not indexed here on
    /// PostgreSQL (migration 13).
    #[sea_orm(column_type = "Text")]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub kind: String,
    #[sea_orm(column_type = "Text")]
    pub action: String,
    #[sea_orm(column_type = "Text")]
    pub actor: String,
    #[sea_orm(column_type = "Text")]
    pub on_behalf_of: String,
    #[sea_orm(column_type = "Text")]
    pub organization_id: String,
    #[sea_orm(column_type = "Text")]
    pub resource_id: String,
    #[sea_orm(column_type = "Text")]
    pub request_id: String,
    pub audit: bool,
    #[sea_orm(column_type = "Text")]
    pub payload: String,
    pub create_time: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

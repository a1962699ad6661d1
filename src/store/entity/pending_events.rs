//! `pending_events`: on PostgreSQL, events of committed changes that the
//! sequencer has not yet numbered and moved into `events`; `pending_id`
//! orders them. Unused on SQLite.

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

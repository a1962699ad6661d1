//! `events`: the append-only log. `seq` is taken from `event_sequence` in
//! commit order on SQLite, and from the `event_positions` sequence (the
//! column's default, `event_position()`) on PostgreSQL, where readers stop
//! at the log's horizon (`crate::events::horizon`); `payload` is JSON as
//! TEXT.

use sea_orm::entity::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, Serialize, Deserialize)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: i64,
    #[sea_orm(column_type = "Text", unique)]
    pub id: String,
    #[sea_orm(column_type = "Text")]
    pub action: String,
    #[sea_orm(column_type = "Text")]
    pub actor: String,
    #[sea_orm(column_type = "Text")]
    pub on_behalf_of: String,
    /// Empty when the event concerns no organization.
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
    /// The event kind (`organization.created`, …); empty for audit entries
    /// that change nothing.
    #[sea_orm(column_type = "Text")]
    pub kind: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

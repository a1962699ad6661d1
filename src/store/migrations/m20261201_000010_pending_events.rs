//! `pending_events`: on PostgreSQL a change writes its events here, without a
//! position and without taking any lock; after the commit the sequencer
//! (`crate::events::sequencer`) moves them into `events`, numbered in the
//! order their changes committed. SQLite numbers events in its one writer
//! and leaves the table empty.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: &str = r#"
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    on_behalf_of TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    audit BOOLEAN NOT NULL,
    payload TEXT NOT NULL,
    create_time BIGINT NOT NULL
)"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let key = match manager.get_database_backend() {
            DbBackend::Postgres => "pending_id BIGSERIAL PRIMARY KEY,",
            _ => "pending_id INTEGER PRIMARY KEY AUTOINCREMENT,",
        };
        let script = format!("CREATE TABLE pending_events (\n    {key}{COLUMNS}");
        super::run_script(manager, &script).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, "DROP TABLE pending_events").await
    }
}

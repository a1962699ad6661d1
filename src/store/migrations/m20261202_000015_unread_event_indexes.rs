//! `events` loses two indexes that no query reads: `events_action` (no
//! listing filters the log by action) and `events_create_time` (pruning
//! walks the log by position and stops at the first event inside the
//! retention). Every event written maintained both, on both databases.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP INDEX events_action;\nDROP INDEX events_create_time",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "CREATE INDEX events_action ON events (action, seq);\n\
             CREATE INDEX events_create_time ON events (create_time)",
        )
        .await
    }
}

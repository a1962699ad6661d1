//! `pending_events`: on PostgreSQL a change writes its events here, without a
//! position and without taking any lock; after the commit the sequencer
//! (`crate::events::sequencer`) moves them into `events`, numbered in the
//! order their changes committed. SQLite numbers events in its one writer
//! and leaves the table empty.
//!
//! `billing_totals` gets rows 2..=16 (at 0): the organization count is the
//! sum of the rows, and a change moves one row chosen at random, so
//! concurrent creations on PostgreSQL do not queue on one row lock.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The rows this migration leaves in `billing_totals` (a later one adds
/// more).
const SHARDS: i32 = 16;

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
            // Never written on SQLite.
            _ => "pending_id BIGINT PRIMARY KEY,",
        };
        let shards: Vec<String> = (2..=SHARDS).map(|id| format!("({id}, 0)")).collect();
        let script = format!(
            "CREATE TABLE pending_events (\n    {key}{COLUMNS};\n\
             INSERT INTO billing_totals (id, total_organizations) VALUES {}",
            shards.join(", ")
        );
        super::run_script(manager, &script).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP TABLE pending_events;\n\
             UPDATE billing_totals SET total_organizations = \
             (SELECT SUM(total_organizations) FROM billing_totals) WHERE id = 1;\n\
             DELETE FROM billing_totals WHERE id > 1",
        )
        .await
    }
}

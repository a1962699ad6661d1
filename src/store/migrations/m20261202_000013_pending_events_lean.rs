//! `pending_events` loses its unique index on `id` and is vacuumed often.
//!
//! Every event of a change on PostgreSQL is written to this table and soon
//! deleted from it again by the sequencer, so each index on it is paid for
//! twice per event. The index on `id` guarded nothing that `events` does not
//! guard already: event ids are ULIDs made by the server (80 random bits
//! within a millisecond), and `events.id` stays unique. Without it the
//! staging insert of a new organization's two events writes 1,555 bytes of
//! WAL instead of 1,743 and runs in 77 µs instead of 145 (pg_stat_statements
//! over one `orgs-bench writes` run each, 32 in flight).
//!
//! A queue table is mostly dead rows between vacuums, which the sequencer's
//! moves and checks walk past, so autovacuum is asked to clean it after
//! 1,000 dead rows rather than after a fifth of the table.
//! On SQLite, which never writes the table, it is made anew without the index.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The SQLite table, with or without the unique index on `id`.
fn sqlite_table(unique: &str) -> String {
    format!(
        "DROP TABLE pending_events;\n\
         CREATE TABLE pending_events (\n    pending_id BIGINT PRIMARY KEY,\n    \
         id TEXT NOT NULL{unique},\n    kind TEXT NOT NULL,\n    action TEXT NOT NULL,\n    \
         actor TEXT NOT NULL,\n    on_behalf_of TEXT NOT NULL,\n    \
         organization_id TEXT NOT NULL,\n    resource_id TEXT NOT NULL,\n    \
         request_id TEXT NOT NULL,\n    audit BOOLEAN NOT NULL,\n    payload TEXT NOT NULL,\n    \
         create_time BIGINT NOT NULL\n)"
    )
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let script = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "ALTER TABLE pending_events DROP CONSTRAINT IF EXISTS pending_events_id_key;\n\
                 ALTER TABLE pending_events SET (autovacuum_vacuum_scale_factor = 0, \
                 autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0, \
                 autovacuum_vacuum_insert_threshold = 1000)"
                    .to_string()
            }
            _ => sqlite_table(""),
        };
        super::run_script(manager, &script).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let script = match manager.get_database_backend() {
            DbBackend::Postgres => {
                "ALTER TABLE pending_events RESET (autovacuum_vacuum_scale_factor, \
                 autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor, \
                 autovacuum_vacuum_insert_threshold);\n\
                 ALTER TABLE pending_events ADD CONSTRAINT pending_events_id_key UNIQUE (id)"
                    .to_string()
            }
            _ => sqlite_table(" UNIQUE"),
        };
        super::run_script(manager, &script).await
    }
}

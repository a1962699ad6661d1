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
//!
//! SQLite never writes the table (its one writer numbers events itself), so
//! there the table stays as migration 10 made it.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// PostgreSQL only.
const UP: &str = "ALTER TABLE pending_events DROP CONSTRAINT IF EXISTS pending_events_id_key;\n\
     ALTER TABLE pending_events SET (autovacuum_vacuum_scale_factor = 0, \
     autovacuum_vacuum_threshold = 1000, autovacuum_vacuum_insert_scale_factor = 0, \
     autovacuum_vacuum_insert_threshold = 1000)";

/// PostgreSQL only.
const DOWN: &str = "ALTER TABLE pending_events RESET (autovacuum_vacuum_scale_factor, \
     autovacuum_vacuum_threshold, autovacuum_vacuum_insert_scale_factor, \
     autovacuum_vacuum_insert_threshold);\n\
     ALTER TABLE pending_events ADD CONSTRAINT pending_events_id_key UNIQUE (id)";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        super::run_script(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        super::run_script(manager, DOWN).await
    }
}

//! `billing_totals` gets rows 17..=64 (at 0), so that the 32 connections of
//! a pool seldom share one: on PostgreSQL a new organization moves the row
//! of its connection's server process (`pg_backend_pid()` modulo the rows),
//! and with 16 rows two connections of 32 shared each, one waiting for the
//! other's commit. The count is still the sum of the rows.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The rows before and after this migration.
const BEFORE: i32 = 16;
const AFTER: i32 = 64;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let rows: Vec<String> = (BEFORE + 1..=AFTER)
            .map(|id| format!("({id}, 0)"))
            .collect();
        super::run_script(
            manager,
            &format!(
                "INSERT INTO billing_totals (id, total_organizations) VALUES {}",
                rows.join(", ")
            ),
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            &format!(
                "UPDATE billing_totals SET total_organizations = \
                 (SELECT SUM(total_organizations) FROM billing_totals WHERE id = 1 OR id > {BEFORE}) \
                 WHERE id = 1;\n\
                 DELETE FROM billing_totals WHERE id > {BEFORE}"
            ),
        )
        .await
    }
}

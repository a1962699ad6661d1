//! Schema migrations, one per file. SQL is written once for both backends:
//! times are BIGINT microseconds since the epoch, JSON is TEXT.

use sea_orm_migration::prelude::*;

mod m20261128_000001_organizations;
mod m20261128_000002_invitations;
mod m20261128_000003_billing;
mod m20261201_000004_event_kinds;
mod m20261201_000005_server_keys;
mod m20261201_000006_domain_claims;
mod m20261201_000007_external_ids;
mod m20261201_000008_lifecycle;
mod m20261201_000009_event_pruning;
mod m20261201_000010_pending_events;
mod m20261201_000011_period_users;
mod m20261202_000012_totals_shards;
mod m20261202_000013_pending_events_lean;
mod m20261202_000014_event_positions;
mod m20261202_000015_unread_event_indexes;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_organizations::Migration),
            Box::new(m20261128_000002_invitations::Migration),
            Box::new(m20261128_000003_billing::Migration),
            Box::new(m20261201_000004_event_kinds::Migration),
            Box::new(m20261201_000005_server_keys::Migration),
            Box::new(m20261201_000006_domain_claims::Migration),
            Box::new(m20261201_000007_external_ids::Migration),
            Box::new(m20261201_000008_lifecycle::Migration),
            Box::new(m20261201_000009_event_pruning::Migration),
            Box::new(m20261201_000010_pending_events::Migration),
            Box::new(m20261201_000011_period_users::Migration),
            Box::new(m20261202_000012_totals_shards::Migration),
            Box::new(m20261202_000013_pending_events_lean::Migration),
            Box::new(m20261202_000014_event_positions::Migration),
            Box::new(m20261202_000015_unread_event_indexes::Migration),
        ]
    }
}

/// Runs `;`-separated statements one by one.
pub(crate) async fn run_script(manager: &SchemaManager<'_>, script: &str) -> Result<(), DbErr> {
    let conn = manager.get_connection();
    for sql in script
        .split(";\n")
        .map(str::trim)
        .filter(|sql| !sql.is_empty())
    {
        conn.execute_unprepared(sql).await?;
    }
    Ok(())
}

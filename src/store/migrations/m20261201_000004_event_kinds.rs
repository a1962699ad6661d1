//! The kind of each event (`organization.created`, …), so readers of the log
//! (caches, watches, other services) follow changes by what they are rather
//! than by the RPC that made them. Billing events recorded before get their
//! kinds; older audit entries keep an empty kind.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT '';
UPDATE events SET kind = 'billing.organization_became_billable' WHERE action = 'OrganizationBecameBillable';
UPDATE events SET kind = 'billing.period_started' WHERE action = 'PeriodStarted';
CREATE INDEX events_kind ON events (kind, seq)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP INDEX events_kind;\nALTER TABLE events DROP COLUMN kind",
        )
        .await
    }
}

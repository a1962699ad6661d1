//! Lifecycle and the budget guardrail: `deactivate_time` on organizations and
//! memberships (NULL while active), `budget_alerts` (one row per period and
//! percentage of the budget reached, so a threshold is recorded once however
//! many replicas race to cross it) and `deleted_organizations` (a tombstone per
//! deleted organization, so its usage still answers).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
ALTER TABLE organizations ADD COLUMN deactivate_time BIGINT;
ALTER TABLE memberships ADD COLUMN deactivate_time BIGINT;
CREATE TABLE budget_alerts (
    period TEXT NOT NULL,
    percent INTEGER NOT NULL,
    amount_due BIGINT NOT NULL,
    budget BIGINT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (period, percent)
);
CREATE TABLE deleted_organizations (
    id TEXT NOT NULL PRIMARY KEY,
    delete_time BIGINT NOT NULL
)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP TABLE deleted_organizations;\nDROP TABLE budget_alerts;\nALTER TABLE memberships DROP COLUMN deactivate_time;\nALTER TABLE organizations DROP COLUMN deactivate_time",
        )
        .await
    }
}

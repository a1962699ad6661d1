//! Billing counters: who was active in which period, the active members and
//! counts of each organization per period, and per-period totals. None of
//! these reference `organizations`: billing history outlives a deleted
//! organization.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
CREATE TABLE billing_user_activity (
    period TEXT NOT NULL,
    user_id TEXT NOT NULL,
    first_occur_time BIGINT NOT NULL,
    record_time BIGINT NOT NULL,
    PRIMARY KEY (period, user_id)
);
CREATE TABLE billing_active_members (
    period TEXT NOT NULL,
    organization_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (period, organization_id, user_id)
);
CREATE INDEX billing_active_members_user ON billing_active_members (period, user_id);
CREATE TABLE billing_organization_usage (
    organization_id TEXT NOT NULL,
    period TEXT NOT NULL,
    active_member_count BIGINT NOT NULL DEFAULT 0,
    billable_since BIGINT,
    billable_order BIGINT,
    PRIMARY KEY (organization_id, period)
);
CREATE UNIQUE INDEX billing_organization_usage_order ON billing_organization_usage (period, billable_order);
CREATE TABLE billing_periods (
    period TEXT PRIMARY KEY,
    monthly_active_users BIGINT NOT NULL DEFAULT 0,
    billable_organizations BIGINT NOT NULL DEFAULT 0,
    create_time BIGINT NOT NULL
);
CREATE TABLE billing_totals (
    id INTEGER PRIMARY KEY,
    total_organizations BIGINT NOT NULL
);
INSERT INTO billing_totals (id, total_organizations) SELECT 1, COUNT(*) FROM organizations
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP TABLE billing_totals;\nDROP TABLE billing_periods;\nDROP TABLE billing_organization_usage;\nDROP TABLE billing_active_members;\nDROP TABLE billing_user_activity",
        )
        .await
    }
}

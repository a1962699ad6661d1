//! `billing_period_users`: a period's monthly active users are counted on one
//! of several rows (`TOTALS_SHARDS`) chosen at random (their sum, plus what
//! `billing_periods.monthly_active_users` counted before this table, is the
//! period's count), so concurrent `RecordActivity` calls of first-time users
//! on PostgreSQL do not queue on the period's one row lock until each other's
//! commit. The period row still orders organizations becoming billable; that
//! is rare and must be serial.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "CREATE TABLE billing_period_users (\n\
             \x20   period TEXT NOT NULL,\n\
             \x20   shard INTEGER NOT NULL,\n\
             \x20   monthly_active_users BIGINT NOT NULL DEFAULT 0,\n\
             \x20   PRIMARY KEY (period, shard)\n\
             )",
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "UPDATE billing_periods SET monthly_active_users = monthly_active_users + \
             COALESCE((SELECT SUM(u.monthly_active_users) FROM billing_period_users u \
             WHERE u.period = billing_periods.period), 0);\n\
             DROP TABLE billing_period_users",
        )
        .await
    }
}

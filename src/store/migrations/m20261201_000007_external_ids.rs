//! `organizations.external_id`: an organization's id in another system (a CRM,
//! a billing provider), unique when set. A partial unique index (both SQLite
//! and PostgreSQL have them) leaves the organizations without one out.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
ALTER TABLE organizations ADD COLUMN external_id TEXT;
CREATE UNIQUE INDEX organizations_external_id ON organizations (external_id) WHERE external_id IS NOT NULL
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP INDEX organizations_external_id;\nALTER TABLE organizations DROP COLUMN external_id",
        )
        .await
    }
}

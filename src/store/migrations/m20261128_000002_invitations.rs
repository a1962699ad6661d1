//! Invitations, verified domains and membership requests.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
CREATE TABLE invitations (
    id TEXT PRIMARY KEY,
    organization_id TEXT REFERENCES organizations (id) ON DELETE CASCADE,
    email_address TEXT NOT NULL,
    role TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    inviter_user_id TEXT NOT NULL DEFAULT '',
    redirect_url TEXT NOT NULL DEFAULT '',
    public_metadata TEXT NOT NULL DEFAULT '{}',
    private_metadata TEXT NOT NULL DEFAULT '{}',
    token_hash TEXT NOT NULL UNIQUE,
    expire_time BIGINT NOT NULL,
    accepted_user_id TEXT NOT NULL DEFAULT '',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE UNIQUE INDEX invitations_one_pending ON invitations (COALESCE(organization_id, ''), email_address) WHERE status = 'pending';
CREATE INDEX invitations_organization ON invitations (organization_id, create_time, id);
CREATE INDEX invitations_email ON invitations (email_address, status);
CREATE INDEX invitations_organization_status ON invitations (organization_id, status, expire_time);
CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL UNIQUE,
    enrollment_mode TEXT NOT NULL,
    verified BOOLEAN NOT NULL DEFAULT FALSE,
    affiliation_email_address TEXT NOT NULL DEFAULT '',
    verify_time BIGINT,
    code_hash TEXT,
    code_expire_time BIGINT,
    code_attempts INTEGER NOT NULL DEFAULT 0,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX domains_organization ON domains (organization_id, name);
CREATE TABLE membership_requests (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    email_address TEXT NOT NULL,
    status TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL
);
CREATE UNIQUE INDEX membership_requests_one_pending ON membership_requests (organization_id, user_id) WHERE status = 'pending';
CREATE INDEX membership_requests_organization ON membership_requests (organization_id, create_time, id);
CREATE INDEX membership_requests_user ON membership_requests (user_id, status)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP TABLE membership_requests;\nDROP TABLE domains;\nDROP TABLE invitations",
        )
        .await
    }
}

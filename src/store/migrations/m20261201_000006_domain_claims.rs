//! Domains that cannot be guessed or squatted: a name is unique only among
//! verified domains (a partial unique index), so several organizations may
//! claim it while unverified; each domain has a verification strategy, a DNS
//! challenge token and a lock; every prepared code and failed attempt is kept
//! for the per-domain limits; claims removed because another organization
//! verified their name are remembered for a while, so an attempt on one
//! learns why it is gone. That table has no foreign key to `organizations` on
//! purpose: a verification that records a removal must not need a lock on
//! the other organization's row (PostgreSQL takes one for a reference), which
//! a concurrent change of that organization may hold while it waits for the
//! claim row the verification holds. Outstanding codes hashed with plain SHA-256 are
//! voided (they live ten minutes; a new one is prepared with a keyed hash).
//!
//! PostgreSQL drops the `UNIQUE (name)` constraint in place. SQLite cannot
//! drop a column constraint, so the table is rebuilt: created anew, copied,
//! the old one dropped and the new one renamed, in one transaction. No table
//! references `domains` before this migration, so dropping it with foreign
//! keys on deletes nothing elsewhere; the new table's own reference to
//! `organizations` (ON DELETE CASCADE) is declared again.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The columns of `domains` after this migration, in order.
const COLUMNS: &str = "id, organization_id, name, enrollment_mode, verified, \
    affiliation_email_address, verify_time, code_hash, code_expire_time, code_attempts, \
    create_time, update_time, revision";

const POSTGRES: &str = r#"
ALTER TABLE domains DROP CONSTRAINT IF EXISTS domains_name_key;
ALTER TABLE domains ADD COLUMN verification_strategy TEXT NOT NULL DEFAULT 'email_code';
ALTER TABLE domains ADD COLUMN dns_token TEXT;
ALTER TABLE domains ADD COLUMN locked_until BIGINT;
UPDATE domains SET code_hash = NULL, code_expire_time = NULL WHERE code_hash IS NOT NULL
"#;

const SQLITE_TABLE: &str = r#"
CREATE TABLE domains_rebuilt (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    enrollment_mode TEXT NOT NULL,
    verified BOOLEAN NOT NULL DEFAULT FALSE,
    affiliation_email_address TEXT NOT NULL DEFAULT '',
    verify_time BIGINT,
    code_hash TEXT,
    code_expire_time BIGINT,
    code_attempts INTEGER NOT NULL DEFAULT 0,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1,
    verification_strategy TEXT NOT NULL DEFAULT 'email_code',
    dns_token TEXT,
    locked_until BIGINT
)
"#;

/// Both backends, once `domains` has its new columns and no UNIQUE (name).
const COMMON: &str = r#"
DROP INDEX IF EXISTS domains_organization;
CREATE UNIQUE INDEX domains_organization ON domains (organization_id, name);
CREATE UNIQUE INDEX domains_verified_name ON domains (name) WHERE verified = TRUE;
CREATE INDEX domains_name ON domains (name, verified, create_time);
CREATE TABLE domain_verification_attempts (
    id TEXT PRIMARY KEY,
    domain_id TEXT NOT NULL REFERENCES domains (id) ON DELETE CASCADE,
    kind TEXT NOT NULL,
    create_time BIGINT NOT NULL
);
CREATE INDEX domain_verification_attempts_domain ON domain_verification_attempts (domain_id, kind, create_time);
CREATE TABLE removed_domain_claims (
    domain_id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL,
    name TEXT NOT NULL,
    remove_time BIGINT NOT NULL
);
CREATE INDEX removed_domain_claims_time ON removed_domain_claims (remove_time)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    /// On SQLite too, so that a rebuild stops whole or not at all.
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            super::run_script(manager, POSTGRES).await?;
        } else {
            super::run_script(manager, SQLITE_TABLE).await?;
            let copy = format!(
                "INSERT INTO domains_rebuilt ({COLUMNS}) SELECT {COLUMNS} FROM domains;\n\
                 UPDATE domains_rebuilt SET code_hash = NULL, code_expire_time = NULL WHERE code_hash IS NOT NULL;\n\
                 DROP TABLE domains;\n\
                 ALTER TABLE domains_rebuilt RENAME TO domains"
            );
            super::run_script(manager, &copy).await?;
        }
        super::run_script(manager, COMMON).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Back to one claim per name: only the verified claims and the oldest
        // unverified claim of each other name survive.
        super::run_script(
            manager,
            "DROP TABLE removed_domain_claims;\n\
             DROP TABLE domain_verification_attempts;\n\
             DROP INDEX domains_name;\n\
             DROP INDEX domains_verified_name;\n\
             DROP INDEX domains_organization;\n\
             CREATE INDEX domains_organization ON domains (organization_id, name);\n\
             DELETE FROM domains WHERE verified = FALSE AND EXISTS (SELECT 1 FROM domains AS d WHERE d.name = domains.name AND d.id <> domains.id AND (d.verified = TRUE OR d.id < domains.id))",
        )
        .await?;
        if manager.get_database_backend() == DbBackend::Postgres {
            super::run_script(
                manager,
                "ALTER TABLE domains DROP COLUMN verification_strategy;\n\
                 ALTER TABLE domains DROP COLUMN dns_token;\n\
                 ALTER TABLE domains DROP COLUMN locked_until;\n\
                 ALTER TABLE domains ADD CONSTRAINT domains_name_key UNIQUE (name)",
            )
            .await
        } else {
            super::run_script(
                manager,
                "ALTER TABLE domains DROP COLUMN verification_strategy;\n\
                 ALTER TABLE domains DROP COLUMN dns_token;\n\
                 ALTER TABLE domains DROP COLUMN locked_until;\n\
                 CREATE UNIQUE INDEX domains_name_key ON domains (name)",
            )
            .await
        }
    }
}

//! Organizations, memberships, roles, permissions, the event log and
//! idempotency records.

use sea_orm_migration::prelude::*;

use crate::domain::roles::{BUILT_IN_ROLES, SYSTEM_PERMISSIONS};

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
CREATE TABLE organizations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    slug TEXT NOT NULL UNIQUE,
    created_by TEXT,
    max_allowed_memberships INTEGER NOT NULL DEFAULT 0,
    members_count INTEGER NOT NULL DEFAULT 0,
    pending_invitations_count INTEGER NOT NULL DEFAULT 0,
    public_metadata TEXT NOT NULL DEFAULT '{}',
    private_metadata TEXT NOT NULL DEFAULT '{}',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1
);
CREATE INDEX organizations_created_by ON organizations (created_by);
CREATE INDEX organizations_create_time ON organizations (create_time, id);
CREATE INDEX organizations_name ON organizations (name, id);
CREATE TABLE roles (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    built_in BOOLEAN NOT NULL DEFAULT FALSE,
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1
);
CREATE TABLE permissions (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    system BOOLEAN NOT NULL DEFAULT FALSE,
    create_time BIGINT NOT NULL
);
CREATE TABLE role_permissions (
    role_key TEXT NOT NULL REFERENCES roles (key) ON DELETE CASCADE ON UPDATE CASCADE,
    permission_key TEXT NOT NULL REFERENCES permissions (key),
    PRIMARY KEY (role_key, permission_key)
);
CREATE INDEX role_permissions_permission ON role_permissions (permission_key);
CREATE TABLE memberships (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES organizations (id) ON DELETE CASCADE,
    user_id TEXT NOT NULL,
    role TEXT NOT NULL REFERENCES roles (key),
    public_metadata TEXT NOT NULL DEFAULT '{}',
    private_metadata TEXT NOT NULL DEFAULT '{}',
    create_time BIGINT NOT NULL,
    update_time BIGINT NOT NULL,
    revision BIGINT NOT NULL DEFAULT 1,
    UNIQUE (organization_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id, create_time);
CREATE INDEX memberships_role ON memberships (role);
CREATE INDEX memberships_organization_time ON memberships (organization_id, create_time, id);
CREATE TABLE events (
    seq BIGINT PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    action TEXT NOT NULL,
    actor TEXT NOT NULL,
    on_behalf_of TEXT NOT NULL DEFAULT '',
    organization_id TEXT NOT NULL DEFAULT '',
    resource_id TEXT NOT NULL DEFAULT '',
    request_id TEXT NOT NULL DEFAULT '',
    audit BOOLEAN NOT NULL DEFAULT TRUE,
    payload TEXT NOT NULL DEFAULT '{}',
    create_time BIGINT NOT NULL
);
CREATE INDEX events_organization ON events (organization_id, seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_action ON events (action, seq);
CREATE INDEX events_create_time ON events (create_time);
CREATE TABLE event_sequence (
    id INTEGER PRIMARY KEY,
    last_seq BIGINT NOT NULL
);
INSERT INTO event_sequence (id, last_seq) VALUES (1, 0);
CREATE TABLE idempotency_keys (
    principal TEXT NOT NULL,
    request_id TEXT NOT NULL,
    method TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    response TEXT NOT NULL,
    create_time BIGINT NOT NULL,
    PRIMARY KEY (principal, request_id)
);
CREATE INDEX idempotency_keys_create_time ON idempotency_keys (create_time)
"#;

fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

fn seed() -> String {
    let mut sql = String::new();
    for (key, name) in SYSTEM_PERMISSIONS {
        let id = format!("perm_{}", key.replace(':', "_"));
        sql += &format!(
            "INSERT INTO permissions (id, key, name, description, system, create_time) VALUES ({}, {}, {}, '', TRUE, 0);\n",
            quote(&id),
            quote(key),
            quote(name)
        );
    }
    for (key, name, description, permissions) in BUILT_IN_ROLES {
        let id = format!("role_{}", key.replace(':', "_"));
        sql += &format!(
            "INSERT INTO roles (id, key, name, description, built_in, create_time, update_time) VALUES ({}, {}, {}, {}, TRUE, 0, 0);\n",
            quote(&id),
            quote(key),
            quote(name),
            quote(description)
        );
        for permission in *permissions {
            sql += &format!(
                "INSERT INTO role_permissions (role_key, permission_key) VALUES ({}, {});\n",
                quote(key),
                quote(permission)
            );
        }
    }
    sql
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await?;
        super::run_script(manager, &seed()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(
            manager,
            "DROP TABLE idempotency_keys;\nDROP TABLE event_sequence;\nDROP TABLE events;\nDROP TABLE memberships;\nDROP TABLE role_permissions;\nDROP TABLE permissions;\nDROP TABLE roles;\nDROP TABLE organizations",
        )
        .await
    }
}

//! `event_pruning`: one row (`id = 1`) for pruning the event log. The
//! replica holding the lease (`holder` until `lease_until`) prunes; the
//! others leave it alone. `pruned_through` is the highest sequence number
//! deleted: a cursor below it may have lost events and is refused.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const SCHEMA: &str = r#"
CREATE TABLE event_pruning (
    id INTEGER PRIMARY KEY,
    pruned_through BIGINT NOT NULL,
    holder TEXT NOT NULL,
    lease_until BIGINT NOT NULL
);
INSERT INTO event_pruning (id, pruned_through, holder, lease_until) VALUES (1, 0, '', 0)
"#;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, SCHEMA).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        super::run_script(manager, "DROP TABLE event_pruning").await
    }
}

//! PostgreSQL: events take their positions from a sequence, in the change's
//! own transaction, and are written once.
//!
//! Until now a change staged its events in `pending_events` and a sequencer
//! moved them into `events` after the commit, numbered under the
//! `event_sequence` row: every event was written twice and deleted once,
//! and every move committed (and flushed) a transaction of its own. Now
//! `events.seq` defaults to `event_position()`, which gives the transaction
//! its id first and then takes the next value of `event_positions`; readers
//! read the log only up to its horizon (`crate::events::horizon`). The
//! sequence must keep `CACHE 1`: a session caching values could hand out a
//! position below one a reader has already seen as the sequence's last.
//!
//! Events an earlier version staged and did not move yet are moved here,
//! after the last position it gave. During a rolling upgrade, replicas of
//! the earlier version still stage events: a trigger writes those straight
//! into the log, with positions from the sequence. (Those replicas read the
//! log only up to `event_sequence`, which stays where this migration leaves
//! it, so their watches pause until they are replaced.)
//!
//! SQLite is unchanged: its one writer numbers the events of a batch itself.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::DbBackend;

#[derive(DeriveMigrationName)]
pub struct Migration;

const COLUMNS: &str = "id, kind, action, actor, on_behalf_of, organization_id, resource_id, \
    request_id, audit, payload, create_time";

fn up_statements() -> Vec<String> {
    let new_columns = COLUMNS
        .split(", ")
        .map(|column| format!("NEW.{column}"))
        .collect::<Vec<_>>()
        .join(", ");
    vec![
        // No pass of an earlier version moves events while this runs.
        "SELECT last_seq FROM event_sequence WHERE id = 1 FOR UPDATE".into(),
        format!(
            "WITH moved AS (DELETE FROM pending_events RETURNING *) \
             INSERT INTO events (seq, {COLUMNS}) \
             SELECT (SELECT last_seq FROM event_sequence WHERE id = 1) \
                    + row_number() OVER (ORDER BY pending_id), {COLUMNS} FROM moved"
        ),
        "UPDATE event_sequence SET last_seq = \
         GREATEST(last_seq, (SELECT coalesce(max(seq), 0) FROM events)) WHERE id = 1"
            .into(),
        "CREATE SEQUENCE event_positions AS BIGINT MINVALUE 1 CACHE 1".into(),
        "SELECT setval('event_positions', last_seq + 1, false) FROM event_sequence WHERE id = 1"
            .into(),
        // PL/pgSQL: its statements run in order (the id is given before the
        // position is taken), with plans kept by the session.
        "CREATE FUNCTION event_position() RETURNS BIGINT LANGUAGE plpgsql VOLATILE AS \
         $$ BEGIN PERFORM pg_current_xact_id(); RETURN nextval('event_positions'); END $$"
            .into(),
        "ALTER TABLE events ALTER COLUMN seq SET DEFAULT event_position()".into(),
        format!(
            "CREATE FUNCTION pending_event_to_log() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN INSERT INTO events ({COLUMNS}) VALUES ({new_columns}); RETURN NULL; END $$"
        ),
        "CREATE TRIGGER pending_events_to_log BEFORE INSERT ON pending_events \
         FOR EACH ROW EXECUTE FUNCTION pending_event_to_log()"
            .into(),
    ]
}

const DOWN: &[&str] = &[
    "DROP TRIGGER pending_events_to_log ON pending_events",
    "DROP FUNCTION pending_event_to_log()",
    "ALTER TABLE events ALTER COLUMN seq DROP DEFAULT",
    "DROP FUNCTION event_position()",
    "UPDATE event_sequence SET last_seq = \
     GREATEST(last_seq, (SELECT coalesce(max(seq), 0) FROM events)) WHERE id = 1",
    "DROP SEQUENCE event_positions",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        for sql in up_statements() {
            conn.execute_unprepared(&sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() != DbBackend::Postgres {
            return Ok(());
        }
        let conn = manager.get_connection();
        for sql in DOWN {
            conn.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}

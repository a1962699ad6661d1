//! The `idempotency_keys` table: one row per (principal, request_id), claimed
//! at the start of a call's transaction and holding its answer once it
//! commits.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

use crate::store;
use crate::values;

/// A stored claim: which RPC made it, the fingerprint of its request, and its
/// answer (empty while the claiming call has not committed).
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct IdempotencyRow {
    pub method: String,
    pub fingerprint: String,
    pub response: String,
}

/// The claim of `(principal, request_id)` made after `not_before`, if any.
pub async fn get(
    conn: &impl ConnectionTrait,
    principal: &str,
    request_id: &str,
    not_before: i64,
) -> Result<Option<IdempotencyRow>, DbErr> {
    store::fetch_optional(
        conn,
        "SELECT method, fingerprint, response FROM idempotency_keys WHERE principal = $1 AND request_id = $2 AND create_time > $3",
        values![principal, request_id, not_before],
    )
    .await
}

/// Deletes the claim of `(principal, request_id)` if it was made at or before
/// `cutoff`: an expired claim no longer counts.
pub async fn delete_expired_claim(
    conn: &impl ConnectionTrait,
    principal: &str,
    request_id: &str,
    cutoff: i64,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "DELETE FROM idempotency_keys WHERE principal = $1 AND request_id = $2 AND create_time <= $3",
        values![principal, request_id, cutoff],
    )
    .await?;
    Ok(())
}

/// Deletes every claim made at or before `cutoff`.
pub async fn purge(conn: &impl ConnectionTrait, cutoff: i64) -> Result<u64, DbErr> {
    store::execute(
        conn,
        "DELETE FROM idempotency_keys WHERE create_time <= $1",
        values![cutoff],
    )
    .await
}

/// Claims `(principal, request_id)` with an empty answer. Fails with a unique
/// violation when another call holds the claim; on PostgreSQL the insert waits
/// for a concurrent claimer's transaction to end first.
pub async fn claim(
    conn: &impl ConnectionTrait,
    principal: &str,
    request_id: &str,
    method: &str,
    fingerprint: &str,
    now: i64,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "INSERT INTO idempotency_keys (principal, request_id, method, fingerprint, response, create_time) VALUES ($1, $2, $3, $4, '', $5)",
        values![principal, request_id, method, fingerprint, now],
    )
    .await?;
    Ok(())
}

/// Stores the answer of the call holding the claim.
pub async fn store_response(
    conn: &impl ConnectionTrait,
    principal: &str,
    request_id: &str,
    response: &str,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "UPDATE idempotency_keys SET response = $1 WHERE principal = $2 AND request_id = $3",
        values![response, principal, request_id],
    )
    .await?;
    Ok(())
}

/// Gives up the claim of `(principal, request_id)`: the call failed and
/// leaves nothing to replay.
pub async fn release(
    conn: &impl ConnectionTrait,
    principal: &str,
    request_id: &str,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "DELETE FROM idempotency_keys WHERE principal = $1 AND request_id = $2",
        values![principal, request_id],
    )
    .await?;
    Ok(())
}

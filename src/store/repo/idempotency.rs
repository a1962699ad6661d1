//! The `idempotency_keys` table: one row per (principal, request_id), claimed
//! at the start of a call's transaction and holding its answer once it
//! commits.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, DerivePartialModel, EntityTrait,
    QueryFilter,
};

use crate::store::entity::idempotency_keys::{self, ActiveModel, Column, Entity};

/// A stored claim: which RPC made it, the fingerprint of its request, and its
/// answer (empty while the claiming call has not committed).
#[derive(Debug, Clone, PartialEq, Eq, DerivePartialModel)]
#[sea_orm(entity = "idempotency_keys::Entity")]
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
    Entity::find()
        .filter(Column::Principal.eq(principal))
        .filter(Column::RequestId.eq(request_id))
        .filter(Column::CreateTime.gt(not_before))
        .into_partial_model()
        .one(conn)
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
    Entity::delete_many()
        .filter(Column::Principal.eq(principal))
        .filter(Column::RequestId.eq(request_id))
        .filter(Column::CreateTime.lte(cutoff))
        .exec(conn)
        .await?;
    Ok(())
}

/// Deletes every claim made at or before `cutoff`.
pub async fn purge(conn: &impl ConnectionTrait, cutoff: i64) -> Result<u64, DbErr> {
    Ok(Entity::delete_many()
        .filter(Column::CreateTime.lte(cutoff))
        .exec(conn)
        .await?
        .rows_affected)
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
    Entity::insert(ActiveModel {
        principal: Set(principal.to_string()),
        request_id: Set(request_id.to_string()),
        method: Set(method.to_string()),
        fingerprint: Set(fingerprint.to_string()),
        response: Set(String::new()),
        create_time: Set(now),
    })
    .exec_without_returning(conn)
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
    Entity::update_many()
        .col_expr(Column::Response, Expr::value(response))
        .filter(Column::Principal.eq(principal))
        .filter(Column::RequestId.eq(request_id))
        .exec(conn)
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
    Entity::delete_many()
        .filter(Column::Principal.eq(principal))
        .filter(Column::RequestId.eq(request_id))
        .exec(conn)
        .await?;
    Ok(())
}

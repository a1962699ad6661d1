//! The `domain_verification_attempts` table: one row per prepared
//! verification and per failed attempt, so the per-domain windows are exact.
//! Rows older than the longest window are pruned as new ones come in. Also
//! `removed_domain_claims`, the claims another organization's verification
//! removed.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect,
};

use crate::domain::verification::AttemptKind;
use crate::store::entity::domain_verification_attempts::{ActiveModel, Column, Entity};
use crate::store::query;

/// Records one attempt of `kind` at `now`.
pub async fn record(
    conn: &impl ConnectionTrait,
    domain_id: &str,
    kind: AttemptKind,
    now: i64,
) -> Result<(), DbErr> {
    Entity::insert(ActiveModel {
        id: Set(ulid::Ulid::new().to_string()),
        domain_id: Set(domain_id.to_string()),
        kind: Set(kind.as_str().to_string()),
        create_time: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The attempts of `kind` after `since`: how many, and the time of the oldest.
pub async fn since(
    conn: &impl ConnectionTrait,
    domain_id: &str,
    kind: AttemptKind,
    since: i64,
) -> Result<(i64, Option<i64>), DbErr> {
    let select = Entity::find()
        .select_only()
        .expr(Expr::col(Column::Id).count())
        .expr(Expr::col(Column::CreateTime).min())
        .filter(Column::DomainId.eq(domain_id))
        .filter(query::eq_literal(Column::Kind, kind.as_str()))
        .filter(Column::CreateTime.gt(since));
    let row: Option<(i64, Option<i64>)> = select.into_tuple().one(conn).await?;
    Ok(row.unwrap_or((0, None)))
}

/// Forgets the domain's attempts at or before `before`.
pub async fn prune(
    conn: &impl ConnectionTrait,
    domain_id: &str,
    before: i64,
) -> Result<u64, DbErr> {
    Ok(Entity::delete_many()
        .filter(Column::DomainId.eq(domain_id))
        .filter(Column::CreateTime.lte(before))
        .exec(conn)
        .await?
        .rows_affected)
}

/// Remembers that the claim `domain_id` of the organization was removed
/// because another organization verified `name`; forgets what was removed at
/// or before `forget_before`.
pub async fn record_removed_claim(
    conn: &impl ConnectionTrait,
    domain_id: &str,
    organization_id: &str,
    name: &str,
    now: i64,
    forget_before: i64,
) -> Result<(), DbErr> {
    use crate::store::entity::removed_domain_claims as removed;
    removed::Entity::delete_many()
        .filter(removed::Column::RemoveTime.lte(forget_before))
        .exec(conn)
        .await?;
    removed::Entity::insert(removed::ActiveModel {
        domain_id: Set(domain_id.to_string()),
        organization_id: Set(organization_id.to_string()),
        name: Set(name.to_string()),
        remove_time: Set(now),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// The organization and name of a claim removed by another organization's
/// verification, if it is remembered.
pub async fn removed_claim(
    conn: &impl ConnectionTrait,
    domain_id: &str,
) -> Result<Option<(String, String)>, DbErr> {
    use crate::store::entity::removed_domain_claims as removed;
    Ok(removed::Entity::find_by_id(domain_id)
        .one(conn)
        .await?
        .map(|row| (row.organization_id, row.name)))
}

//! The `domains` table. A verification code is stored only as a keyed hash,
//! and the rows read for callers leave it and the DNS challenge out. A name
//! is unique among verified domains (a partial unique index) and within one
//! organization; unverified claims of other organizations may share it.

use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbErr, DerivePartialModel, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, QueryTrait,
};
use serde::{Deserialize, Serialize};

use crate::domain::invitations::EnrollmentMode;
use crate::domain::verification::VerificationStrategy;
use crate::store::entity::domains::{self, ActiveModel, Column, Entity};
use crate::store::query::{self, literal};

/// A stored domain, without its verification code or DNS challenge.
#[derive(Debug, Clone, PartialEq, DerivePartialModel, Serialize, Deserialize)]
#[sea_orm(entity = "domains::Entity")]
pub struct DomainRow {
    pub id: String,
    pub organization_id: String,
    pub name: String,
    pub enrollment_mode: String,
    pub verified: bool,
    pub affiliation_email_address: String,
    pub verify_time: Option<i64>,
    pub create_time: i64,
    pub update_time: i64,
    pub revision: i64,
    pub verification_strategy: String,
}

impl DomainRow {
    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }

    pub fn mode(&self) -> EnrollmentMode {
        EnrollmentMode::from_stored(&self.enrollment_mode)
    }
}

/// The outstanding verification code of a domain, its DNS challenge and its
/// lock.
#[derive(Debug, Clone, DerivePartialModel)]
#[sea_orm(entity = "domains::Entity")]
pub struct VerificationCode {
    pub code_hash: Option<String>,
    pub code_expire_time: Option<i64>,
    pub code_attempts: i32,
    pub dns_token: Option<String>,
    pub locked_until: Option<i64>,
}

/// Inserts a domain without an outstanding code.
pub async fn insert(conn: &impl ConnectionTrait, row: &DomainRow) -> Result<(), DbErr> {
    Entity::insert(ActiveModel {
        id: Set(row.id.clone()),
        organization_id: Set(row.organization_id.clone()),
        name: Set(row.name.clone()),
        enrollment_mode: Set(row.enrollment_mode.clone()),
        verified: Set(row.verified),
        affiliation_email_address: Set(row.affiliation_email_address.clone()),
        verify_time: Set(row.verify_time),
        create_time: Set(row.create_time),
        update_time: Set(row.update_time),
        revision: Set(row.revision),
        verification_strategy: Set(row.verification_strategy.clone()),
        ..Default::default()
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<DomainRow>, DbErr> {
    Entity::find_by_id(id).into_partial_model().one(conn).await
}

/// Reads the domain and locks it for the rest of the transaction (`FOR
/// UPDATE` on PostgreSQL; SQLite write transactions hold the database lock).
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<DomainRow>, DbErr> {
    Entity::find_by_id(id)
        .lock_exclusive()
        .into_partial_model()
        .one(conn)
        .await
}

/// The verified domain of this name, whichever organization owns it.
pub async fn verified_named(
    conn: &impl ConnectionTrait,
    name: &str,
) -> Result<Option<DomainRow>, DbErr> {
    Entity::find()
        .filter(Column::Name.eq(name))
        .filter(query::eq_literal(Column::Verified, true))
        .into_partial_model()
        .one(conn)
        .await
}

/// The organization's claim of this name, in force or expired.
pub async fn claim_of(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    name: &str,
) -> Result<Option<DomainRow>, DbErr> {
    Entity::find()
        .filter(Column::OrganizationId.eq(organization_id))
        .filter(Column::Name.eq(name))
        .into_partial_model()
        .one(conn)
        .await
}

/// Verified domains, and unverified claims created after `cutoff`.
fn in_force(cutoff: i64) -> sea_orm::Condition {
    sea_orm::Condition::any()
        .add(query::eq_literal(Column::Verified, true))
        .add(Column::CreateTime.gt(cutoff))
}

/// The organization's domains in force (unverified claims created after
/// `cutoff`, and every verified one).
pub async fn count_in_organization(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    cutoff: i64,
) -> Result<i64, DbErr> {
    query::count(
        conn,
        Entity::find()
            .filter(Column::OrganizationId.eq(organization_id))
            .filter(in_force(cutoff)),
    )
    .await
}

/// Unverified claims of `name` by other domains than `except_id`, in force or
/// expired, locked for the rest of the transaction, in id order.
pub async fn other_claims_for_update(
    conn: &impl ConnectionTrait,
    name: &str,
    except_id: &str,
) -> Result<Vec<DomainRow>, DbErr> {
    Entity::find()
        .filter(Column::Name.eq(name))
        .filter(Column::Id.ne(except_id))
        .filter(query::eq_literal(Column::Verified, false))
        .order_by_asc(Column::Id)
        .lock_exclusive()
        .into_partial_model()
        .all(conn)
        .await
}

/// Expired unverified claims (created at or before `cutoff`) of the
/// organization or of the name, in id order.
pub async fn expired_claims(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    name: &str,
    cutoff: i64,
) -> Result<Vec<DomainRow>, DbErr> {
    Entity::find()
        .filter(query::eq_literal(Column::Verified, false))
        .filter(Column::CreateTime.lte(cutoff))
        .filter(
            sea_orm::Condition::any()
                .add(Column::OrganizationId.eq(organization_id))
                .add(Column::Name.eq(name)),
        )
        .order_by_asc(Column::Id)
        .into_partial_model()
        .all(conn)
        .await
}

/// Writes the enrollment mode and verification strategy if the stored
/// revision is `expected_revision`.
pub async fn update_settings(
    conn: &impl ConnectionTrait,
    id: &str,
    mode: EnrollmentMode,
    strategy: VerificationStrategy,
    now: i64,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::EnrollmentMode, Expr::value(mode.as_str()))
        .col_expr(Column::VerificationStrategy, Expr::value(strategy.as_str()))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(id))
        .filter(Column::Revision.eq(expected_revision))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(Entity::delete_by_id(id).exec(conn).await?.rows_affected == 1)
}

/// Replaces the outstanding code: a new hash, expiry and address, no attempts.
pub async fn set_code(
    conn: &impl ConnectionTrait,
    id: &str,
    affiliation_email_address: &str,
    code_hash: &str,
    code_expire_time: i64,
    now: i64,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(
            Column::AffiliationEmailAddress,
            Expr::value(affiliation_email_address),
        )
        .col_expr(Column::CodeHash, Expr::value(code_hash))
        .col_expr(Column::CodeExpireTime, Expr::value(code_expire_time))
        .col_expr(Column::CodeAttempts, literal(0))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Sets the DNS challenge value, kept until the domain is verified.
pub async fn set_dns_token(
    conn: &impl ConnectionTrait,
    id: &str,
    token: &str,
    now: i64,
) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::DnsToken, Expr::value(token))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

/// Refuses verification of the domain until `until`, and voids its code.
pub async fn lock(conn: &impl ConnectionTrait, id: &str, until: i64) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::LockedUntil, Expr::value(until))
        .col_expr(Column::CodeHash, Expr::null())
        .col_expr(Column::CodeExpireTime, Expr::null())
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn get_code(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<VerificationCode>, DbErr> {
    Entity::find_by_id(id).into_partial_model().one(conn).await
}

/// Counts a wrong attempt; the code is voided when `max_attempts` is reached.
/// Returns whether the code is void now.
pub async fn record_wrong_attempt(
    conn: &impl ConnectionTrait,
    id: &str,
    max_attempts: i32,
) -> Result<bool, DbErr> {
    Entity::update_many()
        .col_expr(Column::CodeAttempts, Expr::col(Column::CodeAttempts).add(1))
        .filter(Column::Id.eq(id))
        .filter(Column::CodeHash.is_not_null())
        .exec(conn)
        .await?;
    let voided = Entity::update_many()
        .col_expr(Column::CodeHash, Expr::null())
        .col_expr(Column::CodeExpireTime, Expr::null())
        .filter(Column::Id.eq(id))
        .filter(Column::CodeAttempts.gte(max_attempts))
        .exec(conn)
        .await?;
    Ok(voided.rows_affected > 0)
}

/// Marks the domain verified and spends its code and DNS challenge. Fails
/// with a unique violation when another domain of the name is verified.
pub async fn mark_verified(conn: &impl ConnectionTrait, id: &str, now: i64) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::Verified, literal(true))
        .col_expr(Column::VerifyTime, Expr::value(now))
        .col_expr(Column::CodeHash, Expr::null())
        .col_expr(Column::CodeExpireTime, Expr::null())
        .col_expr(Column::CodeAttempts, literal(0))
        .col_expr(Column::DnsToken, Expr::null())
        .col_expr(Column::LockedUntil, Expr::null())
        .col_expr(Column::UpdateTime, Expr::value(now))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(id))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn count(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    cutoff: i64,
) -> Result<i64, DbErr> {
    count_in_organization(conn, organization_id, cutoff).await
}

/// One page of the organization's domains in force (see
/// [`count_in_organization`]) ordered by name, after the keyset position
/// `name` (names are unique within an organization).
pub async fn list(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    cutoff: i64,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<DomainRow>, DbErr> {
    Entity::find()
        .filter(Column::OrganizationId.eq(organization_id))
        .filter(in_force(cutoff))
        .apply_if(after, |select, name| select.filter(Column::Name.gt(name)))
        .order_by_asc(Column::Name)
        .limit(limit)
        .into_partial_model()
        .all(conn)
        .await
}

/// The verified domain with this name in this enrollment mode, if any.
pub async fn verified_by_name(
    conn: &impl ConnectionTrait,
    name: &str,
    mode: EnrollmentMode,
) -> Result<Option<DomainRow>, DbErr> {
    Entity::find()
        .filter(Column::Name.eq(name))
        .filter(query::eq_literal(Column::Verified, true))
        .filter(Column::EnrollmentMode.eq(mode.as_str()))
        .into_partial_model()
        .one(conn)
        .await
}

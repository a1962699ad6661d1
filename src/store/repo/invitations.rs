//! The `invitations` table. Only the SHA-256 of a token is stored; it is used
//! for lookups and never read back.

use sea_orm::sea_query::{Asterisk, Expr, ExprTrait, UnionType};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DbErr, DerivePartialModel,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect, QueryTrait, Select,
};
use serde::{Deserialize, Serialize};

use crate::domain::invitations::InvitationStatus;
use crate::store::entity::invitations::{self, ActiveModel, Column, Entity};
use crate::store::entity::{membership_requests, memberships, organizations};
use crate::store::query::{self, eq_literal, literal};

/// A stored invitation, without its token hash; `organization_id` is `None`
/// for an application invitation.
#[derive(Debug, Clone, PartialEq, DerivePartialModel, Serialize, Deserialize)]
#[sea_orm(entity = "invitations::Entity")]
pub struct InvitationRow {
    pub id: String,
    pub organization_id: Option<String>,
    pub email_address: String,
    pub role: String,
    pub status: String,
    pub inviter_user_id: String,
    pub redirect_url: String,
    pub public_metadata: String,
    pub private_metadata: String,
    pub expire_time: i64,
    pub accepted_user_id: String,
    pub create_time: i64,
    pub update_time: i64,
}

impl InvitationRow {
    /// The status a reader sees at `now`.
    pub fn status_at(&self, now: i64) -> InvitationStatus {
        InvitationStatus::at(&self.status, self.expire_time, now)
    }
}

/// `organization_id = id`, or `organization_id IS NULL` for application
/// invitations.
fn of_organization(organization_id: Option<&str>) -> Expr {
    match organization_id {
        Some(id) => Column::OrganizationId.eq(id),
        None => Column::OrganizationId.is_null(),
    }
}

/// `status = 'pending'`, written out as the partial index
/// `invitations_one_pending` declares it.
fn pending() -> Expr {
    eq_literal(Column::Status, "pending")
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    row: &InvitationRow,
    token_hash: &str,
) -> Result<(), DbErr> {
    Entity::insert(ActiveModel {
        id: Set(row.id.clone()),
        organization_id: Set(row.organization_id.clone()),
        email_address: Set(row.email_address.clone()),
        role: Set(row.role.clone()),
        status: Set(row.status.clone()),
        inviter_user_id: Set(row.inviter_user_id.clone()),
        redirect_url: Set(row.redirect_url.clone()),
        public_metadata: Set(row.public_metadata.clone()),
        private_metadata: Set(row.private_metadata.clone()),
        token_hash: Set(token_hash.to_string()),
        expire_time: Set(row.expire_time),
        accepted_user_id: Set(row.accepted_user_id.clone()),
        create_time: Set(row.create_time),
        update_time: Set(row.update_time),
    })
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<InvitationRow>, DbErr> {
    Entity::find_by_id(id).into_partial_model().one(conn).await
}

pub async fn get_by_token_hash(
    conn: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<InvitationRow>, DbErr> {
    Entity::find()
        .filter(Column::TokenHash.eq(token_hash))
        .into_partial_model()
        .one(conn)
        .await
}

/// Stores `expired` on the pending invitations of an organization (or of the
/// application) that are past their expiry at `now`, optionally only those of
/// one email address. Frees the one-pending-per-email index for a new
/// invitation and keeps the pending count exact.
pub async fn sweep_expired(
    conn: &impl ConnectionTrait,
    organization_id: Option<&str>,
    email_address: Option<&str>,
    now: i64,
) -> Result<u64, DbErr> {
    Ok(Entity::update_many()
        .col_expr(Column::Status, literal("expired"))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .filter(pending())
        .filter(Column::ExpireTime.lte(now))
        .filter(of_organization(organization_id))
        .apply_if(email_address, |update, email| {
            update.filter(Column::EmailAddress.eq(email))
        })
        .exec(conn)
        .await?
        .rows_affected)
}

/// Sets the organization's `pending_invitations_count` to its pending,
/// unexpired invitations at `now`. Runs in the transaction of every change to
/// the organization's invitations.
pub async fn refresh_pending_count(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    let pending_count = Entity::find()
        .select_only()
        .expr(Expr::col(Asterisk).count())
        .filter(Column::OrganizationId.eq(organization_id))
        .filter(pending())
        .filter(Column::ExpireTime.gt(now))
        .into_query();
    organizations::Entity::update_many()
        .col_expr(
            organizations::Column::PendingInvitationsCount,
            Expr::SubQuery(None, Box::new(pending_count.into())),
        )
        .filter(organizations::Column::Id.eq(organization_id))
        .exec(conn)
        .await?;
    Ok(())
}

/// The pending, unexpired invitation of an email address in an organization
/// (or the application), if any.
pub async fn find_pending(
    conn: &impl ConnectionTrait,
    organization_id: Option<&str>,
    email_address: &str,
    now: i64,
) -> Result<Option<InvitationRow>, DbErr> {
    Entity::find()
        .filter(pending())
        .filter(Column::ExpireTime.gt(now))
        .filter(Column::EmailAddress.eq(email_address))
        .filter(of_organization(organization_id))
        .into_partial_model()
        .one(conn)
        .await
}

/// Whether an invitation of this email address to the organization was ever
/// revoked.
pub async fn was_revoked(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    email_address: &str,
) -> Result<bool, DbErr> {
    query::any(
        conn,
        Entity::find()
            .filter(Column::OrganizationId.eq(organization_id))
            .filter(Column::EmailAddress.eq(email_address))
            .filter(eq_literal(Column::Status, "revoked")),
    )
    .await
}

/// Whether the email address is known to belong to a current member: a user
/// who joined through an accepted invitation or membership request with it.
pub async fn email_is_member(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    email_address: &str,
) -> Result<bool, DbErr> {
    let mut joined_with_email = Entity::find()
        .select_only()
        .column(Column::AcceptedUserId)
        .filter(Column::OrganizationId.eq(organization_id))
        .filter(Column::EmailAddress.eq(email_address))
        .filter(eq_literal(Column::Status, "accepted"))
        .into_query();
    joined_with_email.union(
        UnionType::Distinct,
        membership_requests::Entity::find()
            .select_only()
            .column(membership_requests::Column::UserId)
            .filter(membership_requests::Column::OrganizationId.eq(organization_id))
            .filter(membership_requests::Column::EmailAddress.eq(email_address))
            .filter(eq_literal(membership_requests::Column::Status, "accepted"))
            .into_query(),
    );
    query::any(
        conn,
        memberships::Entity::find()
            .filter(memberships::Column::OrganizationId.eq(organization_id))
            .filter(memberships::Column::UserId.in_subquery(joined_with_email)),
    )
    .await
}

/// Moves a pending, unexpired invitation to `to`; returns whether it did. The
/// condition is evaluated on the row as it is when the update runs, so of
/// concurrent transitions exactly one succeeds.
pub async fn transition_from_pending(
    conn: &impl ConnectionTrait,
    id: &str,
    to: InvitationStatus,
    accepted_user_id: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(to.as_str()))
        .col_expr(Column::AcceptedUserId, Expr::value(accepted_user_id))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(pending())
        .filter(Column::ExpireTime.gt(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Replaces the token of a pending, unexpired invitation (the old one stops
/// working); returns whether it did.
pub async fn replace_token_hash(
    conn: &impl ConnectionTrait,
    id: &str,
    token_hash: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::TokenHash, Expr::value(token_hash))
        .filter(Column::Id.eq(id))
        .filter(pending())
        .filter(Column::ExpireTime.gt(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

pub use crate::domain::enrollment::InvitationFilter;

fn filtered(filter: &InvitationFilter, now: i64) -> Select<Entity> {
    let select = Entity::find()
        .filter(of_organization(filter.organization_id.as_deref()))
        .apply_if(
            filter.email_address.as_ref().map(|e| e.as_str()),
            |select, email| select.filter(Column::EmailAddress.eq(email)),
        );
    match filter.status {
        None => select,
        Some(InvitationStatus::Pending) => {
            select.filter(pending()).filter(Column::ExpireTime.gt(now))
        }
        // Stored as expired, or still pending past its expiry.
        Some(InvitationStatus::Expired) => select.filter(
            Condition::any()
                .add(eq_literal(Column::Status, "expired"))
                .add(
                    Condition::all()
                        .add(pending())
                        .add(Column::ExpireTime.lte(now)),
                ),
        ),
        Some(status) => select.filter(Column::Status.eq(status.as_str())),
    }
}

pub async fn count(
    conn: &impl ConnectionTrait,
    filter: &InvitationFilter,
    now: i64,
) -> Result<i64, DbErr> {
    query::count(conn, filtered(filter, now)).await
}

/// One page, newest first, after the keyset position `(create_time, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &InvitationFilter,
    now: i64,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<InvitationRow>, DbErr> {
    filtered(filter, now)
        .apply_if(after, |select, (time, id)| {
            select.filter(
                Condition::any().add(Column::CreateTime.lt(time)).add(
                    Condition::all()
                        .add(Column::CreateTime.eq(time))
                        .add(Column::Id.lt(id)),
                ),
            )
        })
        .order_by_desc(Column::CreateTime)
        .order_by_desc(Column::Id)
        .limit(limit)
        .into_partial_model()
        .all(conn)
        .await
}

/// The pending, unexpired invitations of an email address, organization and
/// application ones, newest first.
pub async fn pending_for_email(
    conn: &impl ConnectionTrait,
    email_address: &str,
    now: i64,
) -> Result<Vec<InvitationRow>, DbErr> {
    Entity::find()
        .filter(Column::EmailAddress.eq(email_address))
        .filter(pending())
        .filter(Column::ExpireTime.gt(now))
        .order_by_desc(Column::CreateTime)
        .order_by_desc(Column::Id)
        .limit(500)
        .into_partial_model()
        .all(conn)
        .await
}

//! The `invitations` table. Only the SHA-256 of a token is stored; it is used
//! for lookups and never read back.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::domain::invitations::InvitationStatus;
use crate::store::{self, Sql};
use crate::values;

/// A stored invitation; `organization_id` is `None` for an application
/// invitation.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
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

pub const COLUMNS: &str = "id, organization_id, email_address, role, status, inviter_user_id, redirect_url, public_metadata, private_metadata, expire_time, accepted_user_id, create_time, update_time";

/// `organization_id = $n`, or `organization_id IS NULL` for application
/// invitations.
fn organization_condition(sql: &mut Sql, organization_id: Option<&str>) {
    match organization_id {
        Some(id) => {
            let p = sql.bind(id.to_string());
            sql.push(&format!(" AND organization_id = {p}"));
        }
        None => {
            sql.push(" AND organization_id IS NULL");
        }
    }
}

pub async fn insert(
    conn: &impl ConnectionTrait,
    row: &InvitationRow,
    token_hash: &str,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!("INSERT INTO invitations ({COLUMNS}, token_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"),
        values![
            row.id.clone(),
            row.organization_id.clone(),
            row.email_address.clone(),
            row.role.clone(),
            row.status.clone(),
            row.inviter_user_id.clone(),
            row.redirect_url.clone(),
            row.public_metadata.clone(),
            row.private_metadata.clone(),
            row.expire_time,
            row.accepted_user_id.clone(),
            row.create_time,
            row.update_time,
            token_hash,
        ],
    )
    .await?;
    Ok(())
}

pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<InvitationRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM invitations WHERE id = $1"),
        values![id],
    )
    .await
}

pub async fn get_by_token_hash(
    conn: &impl ConnectionTrait,
    token_hash: &str,
) -> Result<Option<InvitationRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM invitations WHERE token_hash = $1"),
        values![token_hash],
    )
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
    let mut sql = Sql::new("UPDATE invitations SET status = 'expired'");
    let t = sql.bind(now);
    sql.push(&format!(
        ", update_time = {t} WHERE status = 'pending' AND expire_time <= {t}"
    ));
    organization_condition(&mut sql, organization_id);
    if let Some(email) = email_address {
        let p = sql.bind(email.to_string());
        sql.push(&format!(" AND email_address = {p}"));
    }
    store::execute(conn, &sql.text, sql.values).await
}

/// Sets the organization's `pending_invitations_count` to its pending,
/// unexpired invitations at `now`. Runs in the transaction of every change to
/// the organization's invitations.
pub async fn refresh_pending_count(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    now: i64,
) -> Result<(), DbErr> {
    store::execute(
        conn,
        "UPDATE organizations SET pending_invitations_count = \
         (SELECT COUNT(*) FROM invitations WHERE organization_id = $1 AND status = 'pending' AND expire_time > $2) \
         WHERE id = $1",
        values![organization_id, now],
    )
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
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS} FROM invitations WHERE status = 'pending'"
    ));
    let t = sql.bind(now);
    let e = sql.bind(email_address.to_string());
    sql.push(&format!(" AND expire_time > {t} AND email_address = {e}"));
    organization_condition(&mut sql, organization_id);
    store::fetch_optional(conn, &sql.text, sql.values).await
}

/// Whether an invitation of this email address to the organization was ever
/// revoked.
pub async fn was_revoked(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    email_address: &str,
) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM invitations WHERE organization_id = $1 AND email_address = $2 AND status = 'revoked'",
        values![organization_id, email_address],
    )
    .await?
        > 0)
}

/// Whether the email address is known to belong to a current member: a user
/// who joined through an accepted invitation or membership request with it.
pub async fn email_is_member(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    email_address: &str,
) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM memberships m WHERE m.organization_id = $1 AND m.user_id IN (\
           SELECT accepted_user_id FROM invitations WHERE organization_id = $1 AND email_address = $2 AND status = 'accepted' \
           UNION SELECT user_id FROM membership_requests WHERE organization_id = $1 AND email_address = $2 AND status = 'accepted')",
        values![organization_id, email_address],
    )
    .await?
        > 0)
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
    let changed = store::execute(
        conn,
        "UPDATE invitations SET status = $1, accepted_user_id = $2, update_time = $3 \
         WHERE id = $4 AND status = 'pending' AND expire_time > $3",
        values![to.as_str(), accepted_user_id, now, id],
    )
    .await?;
    Ok(changed == 1)
}

/// Replaces the token of a pending, unexpired invitation (the old one stops
/// working); returns whether it did.
pub async fn replace_token_hash(
    conn: &impl ConnectionTrait,
    id: &str,
    token_hash: &str,
    now: i64,
) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE invitations SET token_hash = $1 WHERE id = $2 AND status = 'pending' AND expire_time > $3",
        values![token_hash, id, now],
    )
    .await?;
    Ok(changed == 1)
}

pub use crate::domain::enrollment::InvitationFilter;

fn filter_sql(sql: &mut Sql, filter: &InvitationFilter, now: i64) {
    sql.push(" WHERE 1 = 1");
    organization_condition(sql, filter.organization_id.as_ref().map(|id| id.as_str()));
    if let Some(email) = &filter.email_address {
        let p = sql.bind(email.as_str());
        sql.push(&format!(" AND email_address = {p}"));
    }
    match filter.status {
        None => {}
        Some(InvitationStatus::Pending) => {
            let t = sql.bind(now);
            sql.push(&format!(" AND status = 'pending' AND expire_time > {t}"));
        }
        Some(InvitationStatus::Expired) => {
            let t = sql.bind(now);
            sql.push(&format!(
                " AND (status = 'expired' OR (status = 'pending' AND expire_time <= {t}))"
            ));
        }
        Some(status) => {
            let p = sql.bind(status.as_str());
            sql.push(&format!(" AND status = {p}"));
        }
    }
}

pub async fn count(
    conn: &impl ConnectionTrait,
    filter: &InvitationFilter,
    now: i64,
) -> Result<i64, DbErr> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM invitations");
    filter_sql(&mut sql, filter, now);
    store::fetch_i64(conn, &sql.text, sql.values).await
}

/// One page, newest first, after the keyset position `(create_time, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &InvitationFilter,
    now: i64,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<InvitationRow>, DbErr> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM invitations"));
    filter_sql(&mut sql, filter, now);
    if let Some((time, id)) = after {
        let t = sql.bind(time);
        let i = sql.bind(id);
        sql.push(&format!(
            " AND (create_time < {t} OR (create_time = {t} AND id < {i}))"
        ));
    }
    let l = sql.bind(limit as i64);
    sql.push(&format!(" ORDER BY create_time DESC, id DESC LIMIT {l}"));
    store::fetch_all(conn, &sql.text, sql.values).await
}

/// The pending, unexpired invitations of an email address, organization and
/// application ones, newest first.
pub async fn pending_for_email(
    conn: &impl ConnectionTrait,
    email_address: &str,
    now: i64,
) -> Result<Vec<InvitationRow>, DbErr> {
    store::fetch_all(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM invitations WHERE email_address = $1 AND status = 'pending' AND expire_time > $2 \
             ORDER BY create_time DESC, id DESC LIMIT 500"
        ),
        values![email_address, now],
    )
    .await
}

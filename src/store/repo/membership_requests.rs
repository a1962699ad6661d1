//! The `membership_requests` table.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::domain::invitations::MembershipRequestStatus;
use crate::store::{self, Sql};
use crate::values;

/// A stored membership request.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
pub struct MembershipRequestRow {
    pub id: String,
    pub organization_id: String,
    pub user_id: String,
    pub email_address: String,
    pub status: String,
    pub create_time: i64,
    pub update_time: i64,
}

impl MembershipRequestRow {
    pub fn status(&self) -> MembershipRequestStatus {
        MembershipRequestStatus::from_stored(&self.status)
    }
}

pub const COLUMNS: &str =
    "id, organization_id, user_id, email_address, status, create_time, update_time";

pub async fn insert(conn: &impl ConnectionTrait, row: &MembershipRequestRow) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!("INSERT INTO membership_requests ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"),
        values![
            row.id.clone(),
            row.organization_id.clone(),
            row.user_id.clone(),
            row.email_address.clone(),
            row.status.clone(),
            row.create_time,
            row.update_time,
        ],
    )
    .await?;
    Ok(())
}

pub async fn get(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<MembershipRequestRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM membership_requests WHERE id = $1"),
        values![id],
    )
    .await
}

pub async fn has_pending(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM membership_requests WHERE organization_id = $1 AND user_id = $2 AND status = 'pending'",
        values![organization_id, user_id],
    )
    .await?
        > 0)
}

/// Moves a pending request to `to`; returns whether it did. Of concurrent
/// decisions exactly one succeeds.
pub async fn decide(
    conn: &impl ConnectionTrait,
    id: &str,
    to: MembershipRequestStatus,
    now: i64,
) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE membership_requests SET status = $1, update_time = $2 WHERE id = $3 AND status = 'pending'",
        values![to.as_str(), now, id],
    )
    .await?;
    Ok(changed == 1)
}

fn filter_sql(sql: &mut Sql, organization_id: &str, status: Option<MembershipRequestStatus>) {
    let o = sql.bind(organization_id.to_string());
    sql.push(&format!(" WHERE organization_id = {o}"));
    if let Some(status) = status {
        let s = sql.bind(status.as_str());
        sql.push(&format!(" AND status = {s}"));
    }
}

pub async fn count(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    status: Option<MembershipRequestStatus>,
) -> Result<i64, DbErr> {
    let mut sql = Sql::new("SELECT COUNT(*) FROM membership_requests");
    filter_sql(&mut sql, organization_id, status);
    store::fetch_i64(conn, &sql.text, sql.values).await
}

/// One page, newest first, after the keyset position `(create_time, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    status: Option<MembershipRequestStatus>,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<MembershipRequestRow>, DbErr> {
    let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM membership_requests"));
    filter_sql(&mut sql, organization_id, status);
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

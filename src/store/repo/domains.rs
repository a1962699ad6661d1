//! The `domains` table. A verification code is stored only as a hash.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};
use serde::{Deserialize, Serialize};

use crate::domain::invitations::EnrollmentMode;
use crate::store::{self, Sql, for_update};
use crate::values;

/// A stored domain, without its verification code.
#[derive(Debug, Clone, PartialEq, FromQueryResult, Serialize, Deserialize)]
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
}

impl DomainRow {
    pub fn etag(&self) -> String {
        super::organizations::etag(self.revision)
    }

    pub fn mode(&self) -> EnrollmentMode {
        EnrollmentMode::from_stored(&self.enrollment_mode)
    }
}

/// The outstanding verification code of a domain.
#[derive(Debug, Clone, FromQueryResult)]
pub struct VerificationCode {
    pub code_hash: Option<String>,
    pub code_expire_time: Option<i64>,
    pub code_attempts: i32,
}

pub const COLUMNS: &str = "id, organization_id, name, enrollment_mode, verified, affiliation_email_address, verify_time, create_time, update_time, revision";

pub async fn insert(conn: &impl ConnectionTrait, row: &DomainRow) -> Result<(), DbErr> {
    store::execute(
        conn,
        &format!(
            "INSERT INTO domains ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ),
        values![
            row.id.clone(),
            row.organization_id.clone(),
            row.name.clone(),
            row.enrollment_mode.clone(),
            row.verified,
            row.affiliation_email_address.clone(),
            row.verify_time,
            row.create_time,
            row.update_time,
            row.revision,
        ],
    )
    .await?;
    Ok(())
}

pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<DomainRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM domains WHERE id = $1"),
        values![id],
    )
    .await
}

/// Reads the domain and locks it for the rest of the transaction.
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<DomainRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!(
            "SELECT {COLUMNS} FROM domains WHERE id = $1{}",
            for_update(conn)
        ),
        values![id],
    )
    .await
}

pub async fn name_taken(conn: &impl ConnectionTrait, name: &str) -> Result<bool, DbErr> {
    Ok(store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM domains WHERE name = $1",
        values![name],
    )
    .await?
        > 0)
}

pub async fn count_in_organization(
    conn: &impl ConnectionTrait,
    organization_id: &str,
) -> Result<i64, DbErr> {
    store::fetch_i64(
        conn,
        "SELECT COUNT(*) FROM domains WHERE organization_id = $1",
        values![organization_id],
    )
    .await
}

/// Writes the enrollment mode if the stored revision is `expected_revision`.
pub async fn update_mode(
    conn: &impl ConnectionTrait,
    id: &str,
    mode: EnrollmentMode,
    now: i64,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let changed = store::execute(
        conn,
        "UPDATE domains SET enrollment_mode = $1, update_time = $2, revision = revision + 1 WHERE id = $3 AND revision = $4",
        values![mode.as_str(), now, id, expected_revision],
    )
    .await?;
    Ok(changed == 1)
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(store::execute(conn, "DELETE FROM domains WHERE id = $1", values![id]).await? == 1)
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
    store::execute(
        conn,
        "UPDATE domains SET affiliation_email_address = $1, code_hash = $2, code_expire_time = $3, code_attempts = 0, \
         update_time = $4, revision = revision + 1 WHERE id = $5",
        values![affiliation_email_address, code_hash, code_expire_time, now, id],
    )
    .await?;
    Ok(())
}

pub async fn get_code(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<VerificationCode>, DbErr> {
    store::fetch_optional(
        conn,
        "SELECT code_hash, code_expire_time, code_attempts FROM domains WHERE id = $1",
        values![id],
    )
    .await
}

/// Counts a wrong attempt; the code is voided when `max_attempts` is reached.
/// Returns whether the code is void now.
pub async fn record_wrong_attempt(
    conn: &impl ConnectionTrait,
    id: &str,
    max_attempts: i32,
) -> Result<bool, DbErr> {
    store::execute(
        conn,
        "UPDATE domains SET code_attempts = code_attempts + 1 WHERE id = $1 AND code_hash IS NOT NULL",
        values![id],
    )
    .await?;
    let voided = store::execute(
        conn,
        "UPDATE domains SET code_hash = NULL, code_expire_time = NULL WHERE id = $1 AND code_attempts >= $2",
        values![id, max_attempts],
    )
    .await?;
    Ok(voided > 0)
}

/// Marks the domain verified and spends its code.
pub async fn mark_verified(conn: &impl ConnectionTrait, id: &str, now: i64) -> Result<(), DbErr> {
    store::execute(
        conn,
        "UPDATE domains SET verified = TRUE, verify_time = $1, code_hash = NULL, code_expire_time = NULL, code_attempts = 0, \
         update_time = $1, revision = revision + 1 WHERE id = $2",
        values![now, id],
    )
    .await?;
    Ok(())
}

pub async fn count(conn: &impl ConnectionTrait, organization_id: &str) -> Result<i64, DbErr> {
    count_in_organization(conn, organization_id).await
}

/// One page ordered by name, after the keyset position `name` (names are unique).
pub async fn list(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    after: Option<String>,
    limit: u64,
) -> Result<Vec<DomainRow>, DbErr> {
    let mut sql = Sql::new(&format!(
        "SELECT {COLUMNS} FROM domains WHERE organization_id = "
    ));
    let o = sql.bind(organization_id.to_string());
    sql.push(&o);
    if let Some(name) = after {
        let n = sql.bind(name);
        sql.push(&format!(" AND name > {n}"));
    }
    let l = sql.bind(limit as i64);
    sql.push(&format!(" ORDER BY name LIMIT {l}"));
    store::fetch_all(conn, &sql.text, sql.values).await
}

/// The verified domain with this name in this enrollment mode, if any.
pub async fn verified_by_name(
    conn: &impl ConnectionTrait,
    name: &str,
    mode: EnrollmentMode,
) -> Result<Option<DomainRow>, DbErr> {
    store::fetch_optional(
        conn,
        &format!("SELECT {COLUMNS} FROM domains WHERE name = $1 AND verified = TRUE AND enrollment_mode = $2"),
        values![name, mode.as_str()],
    )
    .await
}

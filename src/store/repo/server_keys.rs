//! The `server_keys` table: named secrets shared by every replica.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult};

use crate::store;
use crate::values;

#[derive(FromQueryResult)]
struct SecretRow {
    secret: String,
}

/// The secret named `name`, stored as `fresh` if there is none yet. Of
/// replicas starting together, the first insert wins and all read its secret.
pub async fn get_or_create(
    conn: &impl ConnectionTrait,
    name: &str,
    fresh: &str,
    now: i64,
) -> Result<String, DbErr> {
    store::execute(
        conn,
        "INSERT INTO server_keys (name, secret, create_time) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        values![name, fresh, now],
    )
    .await?;
    let row: Option<SecretRow> = store::fetch_optional(
        conn,
        "SELECT secret FROM server_keys WHERE name = $1",
        values![name],
    )
    .await?;
    row.map(|row| row.secret)
        .ok_or_else(|| DbErr::RecordNotFound(format!("server key {name}")))
}

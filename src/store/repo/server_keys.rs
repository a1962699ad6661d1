//! The `server_keys` table: named secrets shared by every replica.

use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ConnectionTrait, DbErr, EntityTrait};

use crate::store::entity::server_keys::{ActiveModel, Column, Entity};

/// The secret named `name`, stored as `fresh` if there is none yet. Of
/// replicas starting together, the first insert wins and all read its secret.
pub async fn get_or_create(
    conn: &impl ConnectionTrait,
    name: &str,
    fresh: &str,
    now: i64,
) -> Result<String, DbErr> {
    Entity::insert(ActiveModel {
        name: Set(name.to_string()),
        secret: Set(fresh.to_string()),
        create_time: Set(now),
    })
    .on_conflict(OnConflict::column(Column::Name).do_nothing().to_owned())
    .exec_without_returning(conn)
    .await?;
    Entity::find_by_id(name.to_string())
        .one(conn)
        .await?
        .map(|row| row.secret)
        .ok_or_else(|| DbErr::RecordNotFound(format!("server key {name}")))
}

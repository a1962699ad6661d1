//! The `membership_requests` table.

use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel, QueryFilter,
    QueryOrder, QuerySelect, QueryTrait, Select,
};

use crate::domain::invitations::MembershipRequestStatus;
use crate::store::entity::membership_requests::{self, Column, Entity};
use crate::store::query::{self, eq_literal};

/// A stored membership request: a whole `membership_requests` row.
pub type MembershipRequestRow = membership_requests::Model;

impl MembershipRequestRow {
    pub fn status(&self) -> MembershipRequestStatus {
        MembershipRequestStatus::from_stored(&self.status)
    }
}

/// `status = 'pending'`, written out so the partial index
/// `membership_requests_one_pending` can serve it.
fn pending() -> Expr {
    eq_literal(Column::Status, "pending")
}

pub async fn insert(conn: &impl ConnectionTrait, row: &MembershipRequestRow) -> Result<(), DbErr> {
    Entity::insert(row.clone().into_active_model())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

pub async fn get(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<MembershipRequestRow>, DbErr> {
    Entity::find_by_id(id).one(conn).await
}

pub async fn has_pending(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    user_id: &str,
) -> Result<bool, DbErr> {
    query::any(
        conn,
        Entity::find()
            .filter(Column::OrganizationId.eq(organization_id))
            .filter(Column::UserId.eq(user_id))
            .filter(pending()),
    )
    .await
}

/// Moves a pending request to `to`; returns whether it did. Of concurrent
/// decisions exactly one succeeds.
pub async fn decide(
    conn: &impl ConnectionTrait,
    id: &str,
    to: MembershipRequestStatus,
    now: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Status, Expr::value(to.as_str()))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(pending())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

fn filtered(organization_id: &str, status: Option<MembershipRequestStatus>) -> Select<Entity> {
    Entity::find()
        .filter(Column::OrganizationId.eq(organization_id))
        .apply_if(status, |select, status| {
            select.filter(Column::Status.eq(status.as_str()))
        })
}

pub async fn count(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    status: Option<MembershipRequestStatus>,
) -> Result<i64, DbErr> {
    query::count(conn, filtered(organization_id, status)).await
}

/// One page, newest first, after the keyset position `(create_time, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    status: Option<MembershipRequestStatus>,
    after: Option<(i64, String)>,
    limit: u64,
) -> Result<Vec<MembershipRequestRow>, DbErr> {
    filtered(organization_id, status)
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
        .all(conn)
        .await
}

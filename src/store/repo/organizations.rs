//! The `organizations` table.

use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, IntoActiveModel,
    JoinType, Order, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, RelationTrait,
    Select,
};

use crate::store::entity::{deleted_organizations, memberships, organizations};
use crate::store::query;

use organizations::{Column, Entity};

/// A stored organization: a whole `organizations` row.
pub type OrganizationRow = organizations::Model;

impl OrganizationRow {
    pub fn etag(&self) -> String {
        etag(self.revision)
    }
}

/// The etag of a revision: opaque to clients.
pub fn etag(revision: i64) -> String {
    format!("\"r{revision}\"")
}

pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<OrganizationRow>, DbErr> {
    Entity::find_by_id(id).one(conn).await
}

/// Organizations ordered by id, after `after` (exclusive), at most `limit`:
/// the access cache reads them in pages when it warms up.
pub async fn page_after(
    conn: &impl ConnectionTrait,
    after: &str,
    limit: u64,
) -> Result<Vec<OrganizationRow>, DbErr> {
    Entity::find()
        .filter(Column::Id.gt(after))
        .order_by_asc(Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// Which of `ids` are deactivated.
pub async fn deactivated_among(
    conn: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<Vec<String>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Entity::find()
        .select_only()
        .column(Column::Id)
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(Column::DeactivateTime.is_not_null())
        .into_tuple()
        .all(conn)
        .await
}

/// Reads the organization and locks it for the rest of the transaction, so
/// changes to its memberships are serialized: `FOR UPDATE` on PostgreSQL;
/// SQLite has no row locks (the builder leaves the clause out) and its write
/// transactions hold the database lock already. The role catalogue is
/// locked shared first ([`super::roles::lock_catalogue_for_use`]): every
/// change that locks an organization takes the same two locks in the same
/// order, and a change of roles or permissions waits for them.
pub async fn get_for_update(
    conn: &impl ConnectionTrait,
    id: &str,
) -> Result<Option<OrganizationRow>, DbErr> {
    super::roles::lock_catalogue_for_use(conn).await?;
    Entity::find_by_id(id).lock_exclusive().one(conn).await
}

/// An organization row with the role of the member it was read for.
struct AsMember {
    organization: OrganizationRow,
    role: String,
}

impl FromQueryResult for AsMember {
    fn from_query_result(row: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(AsMember {
            organization: OrganizationRow::from_query_result(row, pre)?,
            role: row.try_get(pre, "member_role")?,
        })
    }
}

/// Which unique column names an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyColumn {
    Id,
    Slug,
    ExternalId,
}

impl KeyColumn {
    fn column(self) -> Column {
        match self {
            KeyColumn::Id => Column::Id,
            KeyColumn::Slug => Column::Slug,
            KeyColumn::ExternalId => Column::ExternalId,
        }
    }
}

/// The organization whose `by` column is `key`.
pub async fn get_by(
    conn: &impl ConnectionTrait,
    by: KeyColumn,
    key: &str,
) -> Result<Option<OrganizationRow>, DbErr> {
    Entity::find().filter(by.column().eq(key)).one(conn).await
}

/// The organizations with these ids that exist, in no particular order: one
/// query.
pub async fn get_many(
    conn: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<Vec<OrganizationRow>, DbErr> {
    Entity::find()
        .filter(Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await
}

/// The organizations with these ids that `user_id` is a member of, in no
/// particular order: one query.
pub async fn get_many_as_member(
    conn: &impl ConnectionTrait,
    ids: &[&str],
    user_id: &str,
) -> Result<Vec<OrganizationRow>, DbErr> {
    Entity::find()
        .filter(Column::Id.is_in(ids.iter().copied()))
        .filter(
            Column::Id.in_subquery(
                memberships::Entity::find()
                    .select_only()
                    .column(memberships::Column::OrganizationId)
                    .filter(memberships::Column::UserId.eq(user_id))
                    .filter(memberships::Column::DeactivateTime.is_null())
                    .into_query(),
            ),
        )
        .all(conn)
        .await
}

/// The name and slug of each of these organizations that exists, by id: one
/// query, for the memberships that carry them.
pub async fn names_of(
    conn: &impl ConnectionTrait,
    ids: &[&str],
) -> Result<std::collections::HashMap<String, (String, String)>, DbErr> {
    let rows: Vec<(String, String, String)> = Entity::find()
        .select_only()
        .column(Column::Id)
        .column(Column::Name)
        .column(Column::Slug)
        .filter(Column::Id.is_in(ids.iter().copied()))
        .into_tuple()
        .all(conn)
        .await?;
    Ok(rows
        .into_iter()
        .map(|(id, name, slug)| (id, (name, slug)))
        .collect())
}

pub async fn get_by_slug(
    conn: &impl ConnectionTrait,
    slug: &str,
) -> Result<Option<OrganizationRow>, DbErr> {
    get_by(conn, KeyColumn::Slug, slug).await
}

/// Whether another organization than `except` has this external id.
pub async fn external_id_taken(
    conn: &impl ConnectionTrait,
    external_id: &str,
    except: Option<&str>,
) -> Result<bool, DbErr> {
    query::any(
        conn,
        Entity::find()
            .filter(Column::ExternalId.eq(external_id))
            .apply_if(except, |select, id| select.filter(Column::Id.ne(id))),
    )
    .await
}

/// The organization whose `by` column is `key` and the role of `user_id` in
/// it, if it is a member: one indexed query.
pub async fn get_as_member(
    conn: &impl ConnectionTrait,
    by: KeyColumn,
    key: &str,
    user_id: &str,
) -> Result<Option<(OrganizationRow, String)>, DbErr> {
    let member = user_id.to_string();
    let membership =
        organizations::Relation::Memberships
            .def()
            .on_condition(move |_, membership| {
                Expr::col((membership.clone(), memberships::Column::UserId))
                    .eq(member.clone())
                    .and(Expr::col((membership, memberships::Column::DeactivateTime)).is_null())
                    .into()
            });
    let found = Entity::find()
        .join(JoinType::InnerJoin, membership)
        .column_as(memberships::Column::Role, "member_role")
        .filter(by.column().eq(key))
        .into_model::<AsMember>()
        .one(conn)
        .await?;
    Ok(found.map(|found| (found.organization, found.role)))
}

pub async fn slug_taken(conn: &impl ConnectionTrait, slug: &str) -> Result<bool, DbErr> {
    query::any(conn, Entity::find().filter(Column::Slug.eq(slug))).await
}

pub async fn count_created_by(conn: &impl ConnectionTrait, user_id: &str) -> Result<i64, DbErr> {
    query::count(conn, Entity::find().filter(Column::CreatedBy.eq(user_id))).await
}

/// Inserts the organization unless its id, slug or external id is taken
/// (then nothing, and false): the statement decides, waiting for a concurrent
/// transaction that holds one of them, and on PostgreSQL the transaction goes
/// on either way.
pub async fn insert_new(conn: &impl ConnectionTrait, row: &OrganizationRow) -> Result<bool, DbErr> {
    let inserted = Entity::insert(row.clone().into_active_model())
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .exec_without_returning(conn)
        .await?;
    Ok(inserted == 1)
}

pub async fn insert(conn: &impl ConnectionTrait, row: &OrganizationRow) -> Result<(), DbErr> {
    Entity::insert(row.clone().into_active_model())
        .exec_without_returning(conn)
        .await?;
    Ok(())
}

/// Writes the updatable fields if the stored revision is `expected_revision`;
/// returns whether it did.
pub async fn update(
    conn: &impl ConnectionTrait,
    row: &OrganizationRow,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::Name, Expr::value(row.name.clone()))
        .col_expr(Column::Slug, Expr::value(row.slug.clone()))
        .col_expr(Column::ExternalId, Expr::value(row.external_id.clone()))
        .col_expr(
            Column::MaxAllowedMemberships,
            Expr::value(row.max_allowed_memberships),
        )
        .col_expr(
            Column::PublicMetadata,
            Expr::value(row.public_metadata.clone()),
        )
        .col_expr(
            Column::PrivateMetadata,
            Expr::value(row.private_metadata.clone()),
        )
        .col_expr(Column::UpdateTime, Expr::value(row.update_time))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(row.id.as_str()))
        .filter(Column::Revision.eq(expected_revision))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Takes one membership place if the organization has room; returns whether it
/// did. The condition is evaluated on the locked row, so concurrent adds can
/// never go past `max_allowed_memberships`.
pub async fn take_membership_place(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::MembersCount, Expr::col(Column::MembersCount).add(1))
        .filter(Column::Id.eq(id))
        .filter(has_room())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The organization row has room for one more member: no cap
/// (`max_allowed_memberships` 0) or fewer members than the cap.
pub(super) fn has_room() -> Condition {
    Condition::any()
        .add(query::eq_literal(Column::MaxAllowedMemberships, 0))
        .add(Expr::col(Column::MembersCount).lt(Expr::col(Column::MaxAllowedMemberships)))
}

pub async fn release_membership_place(conn: &impl ConnectionTrait, id: &str) -> Result<(), DbErr> {
    Entity::update_many()
        .col_expr(Column::MembersCount, Expr::col(Column::MembersCount).sub(1))
        .filter(Column::Id.eq(id))
        .filter(Column::MembersCount.gt(0))
        .exec(conn)
        .await?;
    Ok(())
}

pub async fn delete(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(Entity::delete_by_id(id).exec(conn).await?.rows_affected == 1)
}

/// Deactivates (`Some(time)`) or reactivates (`None`) an organization if the
/// stored revision is `expected_revision`; returns whether it did.
pub async fn set_deactivate_time(
    conn: &impl ConnectionTrait,
    id: &str,
    deactivate_time: Option<i64>,
    now: i64,
    expected_revision: i64,
) -> Result<bool, DbErr> {
    let result = Entity::update_many()
        .col_expr(Column::DeactivateTime, Expr::value(deactivate_time))
        .col_expr(Column::UpdateTime, Expr::value(now))
        .col_expr(Column::Revision, Expr::col(Column::Revision).add(1))
        .filter(Column::Id.eq(id))
        .filter(Column::Revision.eq(expected_revision))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Keeps a tombstone of a deleted organization, so its usage still answers.
pub async fn record_deleted(conn: &impl ConnectionTrait, id: &str, now: i64) -> Result<(), DbErr> {
    use sea_orm::ActiveValue::Set;
    use sea_orm::sea_query::OnConflict;
    deleted_organizations::Entity::insert(deleted_organizations::ActiveModel {
        id: Set(id.to_string()),
        delete_time: Set(now),
    })
    .on_conflict(
        OnConflict::column(deleted_organizations::Column::Id)
            .do_nothing()
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(())
}

/// Whether an organization with this id was deleted.
pub async fn was_deleted(conn: &impl ConnectionTrait, id: &str) -> Result<bool, DbErr> {
    Ok(deleted_organizations::Entity::find_by_id(id)
        .one(conn)
        .await?
        .is_some())
}

pub use crate::domain::organizations::{LifecycleState, OrganizationFilter, OrganizationOrder};

impl OrganizationOrder {
    /// The sort column and its direction.
    fn column(self) -> (Column, Order) {
        match self {
            OrganizationOrder::CreateTime => (Column::CreateTime, Order::Asc),
            OrganizationOrder::CreateTimeDesc => (Column::CreateTime, Order::Desc),
            OrganizationOrder::Name => (Column::Name, Order::Asc),
            OrganizationOrder::MembersCountDesc => (Column::MembersCount, Order::Desc),
        }
    }
}

fn filtered(filter: &OrganizationFilter) -> Select<Entity> {
    Entity::find()
        .apply_if(filter.query.as_deref(), |select, needle| {
            let pattern = crate::store::like_pattern(&needle.to_lowercase());
            select.filter(
                Condition::any()
                    .add(
                        Expr::expr(Func::lower(Column::Name.into_expr()))
                            .like(LikeExpr::new(pattern.clone()).escape('\\')),
                    )
                    .add(Column::Slug.like(LikeExpr::new(pattern).escape('\\'))),
            )
        })
        .apply_if(filter.member.as_deref(), |select, member| {
            select.filter(
                Column::Id.in_subquery(
                    memberships::Entity::find()
                        .select_only()
                        .column(memberships::Column::OrganizationId)
                        .filter(memberships::Column::UserId.eq(member))
                        .filter(memberships::Column::DeactivateTime.is_null())
                        .into_query(),
                ),
            )
        })
        .apply_if(filter.state, |select, state| match state {
            LifecycleState::Active => select.filter(Column::DeactivateTime.is_null()),
            LifecycleState::Deactivated => select.filter(Column::DeactivateTime.is_not_null()),
        })
}

pub async fn count(conn: &impl ConnectionTrait, filter: &OrganizationFilter) -> Result<i64, DbErr> {
    query::count(conn, filtered(filter)).await
}

/// One page after the keyset position `after` (from [`OrganizationOrder::key_of`]).
pub async fn list(
    conn: &impl ConnectionTrait,
    filter: &OrganizationFilter,
    order: OrganizationOrder,
    after: Option<&[String]>,
    limit: u64,
) -> Result<Vec<OrganizationRow>, DbErr> {
    let (column, direction) = order.column();
    let mut select = filtered(filter);
    if let Some([value, id]) = after {
        let value: sea_orm::Value = if order == OrganizationOrder::Name {
            value.clone().into()
        } else {
            value.parse::<i64>().unwrap_or_default().into()
        };
        let (beyond, id_beyond) = match direction {
            Order::Desc => (column.lt(value.clone()), Column::Id.lt(id.as_str())),
            _ => (column.gt(value.clone()), Column::Id.gt(id.as_str())),
        };
        select = select.filter(
            Condition::any()
                .add(beyond)
                .add(Condition::all().add(column.eq(value)).add(id_beyond)),
        );
    }
    select
        .order_by(column, direction.clone())
        .order_by(Column::Id, direction)
        .limit(limit)
        .all(conn)
        .await
}

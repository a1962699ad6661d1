//! SQLite: a member's writes as statements run in turn, in one string and one
//! round trip to the writer's connection (see the parent module). Each string
//! is built once by the query builder ([`Template`]), its values numbered
//! parameters: a call only lists its values. The writer runs one unit at a
//! time, so what a unit spends building its statements is every waiting
//! caller's time.

use sea_orm::sea_query::{Expr, ExprTrait, Query, SqliteQueryBuilder, Values};
use sea_orm::{
    ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, Iterable, QueryFilter,
    QueryTrait, Value,
};

use super::{
    MemberValues, MemberWrite, answer, collect, exists_row, membership_insert, organization_values,
    organization_writes, take_place,
};
use crate::store::entity::{memberships, organizations};
use crate::store::query::{Template, literal, sqlite_param};
use crate::store::repo::billing::random_shard;
use crate::store::repo::memberships::MembershipRow;
use crate::store::repo::organizations::OrganizationRow;

/// [`join_active`]'s string.
static JOIN_ACTIVE: Template = Template::new();

/// [`insert_organization_with_creator`]'s string.
static ORGANIZATION_WITH_CREATOR: Template = Template::new();

/// [`super::insert_member`] for an organization not read yet (the writer's
/// transaction holds the database), in one round trip: the organization is
/// read first in the same string, and the membership is inserted only while
/// the organization exists and is active (so nothing is written for one that
/// does not, or is deactivated). `None` when there is no such organization;
/// else its row as it was before the writes, and what they did.
pub async fn join_active(
    conn: &impl ConnectionTrait,
    membership: &MembershipRow,
    period: &str,
) -> Result<Option<(OrganizationRow, MemberWrite)>, DbErr> {
    debug_assert_eq!(conn.get_database_backend(), DbBackend::Sqlite);
    let statement = JOIN_ACTIVE.statement(
        join_active_statements,
        MemberValues::values(membership, period).into(),
    )?;
    let mut rows = conn.query_all_raw(statement).await?;
    // The organization's row, if any, comes first; the answer's rows (at
    // least one) have none of its columns.
    let found = rows.first().is_some_and(|first| {
        first
            .column_names()
            .iter()
            .all(|column| column != "organization_written")
    });
    if !found {
        return Ok(None);
    }
    let organization = OrganizationRow::from_query_result(&rows.remove(0), "")?;
    Ok(Some((organization, collect(rows)?)))
}

/// [`join_active`]'s statements, over [`MemberValues::params`] from 1.
fn join_active_statements() -> Result<Vec<(String, Values)>, DbErr> {
    use organizations::Column as O;
    let member = MemberValues::params(1);
    let id = || Expr::col((organizations::Entity, O::Id)).eq(member.organization_id.clone());
    let read = organizations::Entity::find()
        .filter(id())
        .into_query()
        .build(SqliteQueryBuilder);
    let active = Expr::exists(
        Query::select()
            .expr(literal(1))
            .from(organizations::Entity)
            .and_where(id())
            .and_where(Expr::col((organizations::Entity, O::DeactivateTime)).is_null())
            .to_owned(),
    );
    // The place is taken only for a membership this string inserted.
    let inserted = exists_row(
        memberships::Entity,
        memberships::Column::Id,
        member.id.clone(),
    );
    let mut place = take_place(member.organization_id.clone());
    place.and_where(inserted.clone());
    // `changes()`: whether the place's UPDATE, the last write before the
    // answer, took one.
    let flags = (Expr::cust("changes() = 1"), inserted);
    let answer = answer(
        Some(member.organization_id.clone()),
        &member,
        flags,
        literal(false),
    );
    Ok(vec![
        read,
        membership_insert(&member, None, Some(active))?.build(SqliteQueryBuilder),
        place.build(SqliteQueryBuilder),
        answer.build(SqliteQueryBuilder),
    ])
}

/// [`super::insert_organization_with_creator`] as statements in turn. The
/// organization's id is new, so it exists afterwards only if this insert
/// wrote it; the membership and the count follow only then.
pub(super) async fn insert_organization_with_creator(
    conn: &impl ConnectionTrait,
    organization: &OrganizationRow,
    membership: &MembershipRow,
    period: &str,
) -> Result<MemberWrite, DbErr> {
    let mut values: Vec<Value> = MemberValues::values(membership, period).into();
    values.push(random_shard().into());
    values.extend(organization_values(organization));
    let statement =
        ORGANIZATION_WITH_CREATOR.statement(organization_with_creator_statements, values)?;
    collect(conn.query_all_raw(statement).await?)
}

/// [`insert_organization_with_creator`]'s statements: the membership's
/// values from parameter 1 ([`MemberValues::params`]), then the count's row,
/// then the organization's values in the order of its columns
/// ([`organization_values`]).
fn organization_with_creator_statements() -> Result<Vec<(String, Values)>, DbErr> {
    let member = MemberValues::params(1);
    let shard = sqlite_param(MemberValues::COUNT + 1);
    let first_column = MemberValues::COUNT + 2;
    let organization: Vec<Expr> = (0..organizations::Column::iter().len())
        .map(|column| sqlite_param(first_column + column))
        .collect();
    let id = organizations::Column::iter()
        .position(|column| matches!(column, organizations::Column::Id))
        .ok_or_else(|| DbErr::Custom("organizations has no id column".to_string()))?;
    let written = exists_row(
        organizations::Entity,
        organizations::Column::Id,
        organization[id].clone(),
    );
    let (insert_organization, count) = organization_writes(organization, shard, written.clone())?;
    let inserted = exists_row(
        memberships::Entity,
        memberships::Column::Id,
        member.id.clone(),
    );
    let answer = answer(None, &member, (written.clone(), inserted), literal(false));
    Ok(vec![
        insert_organization.build(SqliteQueryBuilder),
        membership_insert(&member, None, Some(written))?.build(SqliteQueryBuilder),
        count.build(SqliteQueryBuilder),
        answer.build(SqliteQueryBuilder),
    ])
}

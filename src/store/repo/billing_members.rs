//! Reads of `billing_active_members`, always bounded: one organization's
//! active members a page at a time, or the first few of many organizations
//! at once. Both walk the primary key (period, organization, user) and stop
//! at their limit, so no read loads a whole membership list.

use std::collections::BTreeMap;

use sea_orm::sea_query::{Alias, Asterisk, Query, SelectStatement, UnionType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder,
    QuerySelect, QueryTrait,
};

use crate::store::entity::billing_active_members as active;
use crate::store::query;

/// Organizations per statement of [`first_active_members`]: one UNION ALL
/// branch each, well below SQLite's limit of compound terms.
const ORGANIZATIONS_PER_STATEMENT: usize = 50;

/// One active member of an organization.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
struct MemberRow {
    organization_id: String,
    user_id: String,
}

/// The active members of an organization in a period after `after_user`
/// (none: from the first), ordered by user id, at most `limit`.
pub async fn active_member_page(
    conn: &impl ConnectionTrait,
    period: &str,
    organization_id: &str,
    after_user: Option<&str>,
    limit: u64,
) -> Result<Vec<String>, DbErr> {
    let mut select = active::Entity::find()
        .select_only()
        .column(active::Column::UserId)
        .filter(active::Column::Period.eq(period))
        .filter(active::Column::OrganizationId.eq(organization_id));
    if let Some(after) = after_user {
        select = select.filter(active::Column::UserId.gt(after));
    }
    select
        .order_by_asc(active::Column::UserId)
        .limit(limit)
        .into_tuple()
        .all(conn)
        .await
}

/// The first `per_organization` active members, by user id, of each of
/// `organizations` in a period; organizations without any are absent. Each
/// organization is its own limited branch of one UNION ALL, so the database
/// reads no more than that many index entries of it.
pub async fn first_active_members(
    conn: &impl ConnectionTrait,
    period: &str,
    organizations: &[String],
    per_organization: u64,
) -> Result<BTreeMap<String, Vec<String>>, DbErr> {
    let mut found: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for chunk in organizations.chunks(ORGANIZATIONS_PER_STATEMENT) {
        let mut branches = chunk
            .iter()
            .enumerate()
            .map(|(index, organization)| branch(period, organization, per_organization, index));
        let Some(mut select) = branches.next() else {
            continue;
        };
        for other in branches {
            select.union(UnionType::All, other);
        }
        for row in query::fetch_all::<MemberRow>(conn, &select).await? {
            found
                .entry(row.organization_id)
                .or_default()
                .push(row.user_id);
        }
    }
    // A UNION ALL promises no order across its branches' rows.
    for users in found.values_mut() {
        users.sort_unstable();
    }
    Ok(found)
}

/// `SELECT * FROM (the first members of one organization) AS m<index>`: the
/// limit sits in a sub-select, where both backends allow it inside a UNION.
fn branch(
    period: &str,
    organization_id: &str,
    per_organization: u64,
    index: usize,
) -> SelectStatement {
    let first = active::Entity::find()
        .select_only()
        .column(active::Column::OrganizationId)
        .column(active::Column::UserId)
        .filter(active::Column::Period.eq(period))
        .filter(active::Column::OrganizationId.eq(organization_id))
        .order_by_asc(active::Column::UserId)
        .limit(per_organization)
        .into_query();
    Query::select()
        .column(Asterisk)
        .from_subquery(first, Alias::new(format!("m{index}")))
        .to_owned()
}

/// What adding `user_id` to an organization as a member needs to know, read
/// after the user's billing lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromQueryResult)]
pub struct JoiningUsage {
    /// The user is active in the period.
    pub active: bool,
    /// The organization's active members in the period.
    pub active_member_count: i64,
    /// The organization is billable in the period.
    pub billable: bool,
}

/// Whether `user_id` is active in `period`, and the organization's active
/// members and billability there, in one round trip instead of two.
pub async fn joining_usage(
    conn: &impl ConnectionTrait,
    period: &str,
    organization_id: &str,
    user_id: &str,
) -> Result<JoiningUsage, DbErr> {
    // Raw SQL: a scalar EXISTS beside a LEFT JOIN onto a one-row relation,
    // so that the row comes back whether or not the organization has a
    // usage row in the period.
    let sql = "SELECT EXISTS (SELECT 1 FROM billing_user_activity \
                   WHERE period = $1 AND user_id = $2) AS active, \
               COALESCE(usage.active_member_count, 0) AS active_member_count, \
               usage.billable_since IS NOT NULL AS billable \
               FROM (SELECT 1 AS one) AS one \
               LEFT JOIN billing_organization_usage AS usage \
                 ON usage.organization_id = $3 AND usage.period = $1";
    let values = vec![period.into(), user_id.into(), organization_id.into()];
    crate::store::fetch_all::<JoiningUsage>(conn, sql, values)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| DbErr::RecordNotFound("the joining user's usage".into()))
}

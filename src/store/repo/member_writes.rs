//! PostgreSQL: adding a member in few round trips. A statement is a round
//! trip that wakes the server, the database and the client in turn, so the
//! locks of a membership change are taken in one statement, and the writes
//! and reads that follow them in another: a data-modifying `WITH` whose parts
//! share one snapshot, taken after the locks were granted (READ COMMITTED
//! takes a snapshot per statement, which is why the locks cannot ride in the
//! same statement as the reads they protect). SQLite has no data-modifying
//! `WITH`, but its one writer runs the statements of one string one after
//! another in one round trip to the connection's worker thread: each later
//! statement finds what the earlier ones wrote by the new rows' ids, and the
//! last one answers. It takes no locks: its writer holds the database.
//!
//! Locks are taken in the order every change that adds a member takes them:
//! the role catalogue (shared), then the organization's row, then the users'
//! billing locks in hash order.

use sea_orm::sea_query::{
    Alias, CommonTableExpression, Condition, Expr, ExprTrait, InsertStatement, IntoColumnRef,
    IntoTableRef, JoinType, OnConflict, Order, Query, SelectStatement, SqliteQueryBuilder,
    UpdateStatement, WithClause,
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, IntoActiveModel,
    QueryTrait, Statement, Value,
};

use super::billing::{advisory_locks_sql, user_lock_keys};
use super::memberships::MembershipRow;
use super::organizations::OrganizationRow;
use super::roles::CATALOGUE_LOCK;
use crate::store::entity::{
    billing_organization_usage as usage, billing_totals, billing_user_activity as activity,
    memberships, organizations, role_permissions, roles,
};
use crate::store::query::literal;
use crate::store::{self, fetch_all};

mod statement_events;
pub use statement_events::StatementEvents;

/// The advisory locks of `users`' billing state, as SQL: `$first`… bound
/// in `values`, one `(order, key, shared)` row each after `rows`.
fn user_lock_rows(users: &[String], rows: &mut Vec<String>, values: &mut Vec<Value>) {
    for key in user_lock_keys(users) {
        values.push(Value::from(key));
        rows.push(format!("(1, ${}, false)", values.len()));
    }
}

/// Takes the role catalogue shared and the billing locks of `users` (a
/// transaction that adds them to an organization it creates), in one
/// statement. Nothing on SQLite, whose write transactions hold the database.
pub async fn lock_catalogue_and_users(
    conn: &impl ConnectionTrait,
    users: &[String],
) -> Result<(), DbErr> {
    if conn.get_database_backend() != sea_orm::DbBackend::Postgres {
        return Ok(());
    }
    let mut values = vec![Value::from(CATALOGUE_LOCK)];
    let mut rows = vec!["(0, $1, true)".to_string()];
    user_lock_rows(users, &mut rows, &mut values);
    // Raw SQL: see `advisory_locks_sql`.
    store::execute(conn, &advisory_locks_sql(&rows, "true"), values).await?;
    Ok(())
}

/// Reads the organization and locks it with the role catalogue (shared)
/// before it and the billing locks of `users` after it, in one statement:
/// [`super::organizations::get_for_update`] and
/// [`super::billing::lock_users`] in one round trip. `None`, with no user
/// locked, when the organization does not exist.
pub async fn lock_organization_and_users(
    conn: &impl ConnectionTrait,
    organization_id: &str,
    users: &[String],
) -> Result<Option<OrganizationRow>, DbErr> {
    let mut values = vec![Value::from(CATALOGUE_LOCK), Value::from(organization_id)];
    let mut rows = Vec::new();
    user_lock_rows(users, &mut rows, &mut values);
    let user_locks = if rows.is_empty() {
        "0".to_string()
    } else {
        format!(
            "(SELECT count(*) FROM ({}) AS user_locks)",
            advisory_locks_sql(&rows, "locked.id IS NOT NULL")
        )
    };
    // Raw SQL: advisory locks, and their order around the row lock (the
    // catalogue is joined before the row is locked; the users are locked in
    // a subquery correlated with the locked row, so after it), have no form
    // in the query builder.
    let sql = format!(
        "WITH catalogue AS MATERIALIZED (SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))), \
         locked AS MATERIALIZED (SELECT o.* FROM organizations AS o, catalogue WHERE o.id = $2 FOR UPDATE OF o) \
         SELECT locked.*, {user_locks} AS user_locks FROM locked"
    );
    Ok(fetch_all::<OrganizationRow>(conn, &sql, values)
        .await?
        .into_iter()
        .next())
}

/// What the statement that adds a member found and did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberWrite {
    /// The organization was inserted (a new one) or the member's place taken
    /// (an existing one).
    pub organization_written: bool,
    /// The membership was inserted.
    pub member_inserted: bool,
    /// The role's permissions, sorted; `None` when there is no such role.
    pub permissions: Option<Vec<String>>,
    /// The user is active in the period.
    pub user_active: bool,
    /// The organization's active members in the period, and whether it is
    /// billable in it (an existing organization).
    pub active_member_count: i64,
    pub billable: bool,
    /// The statement wrote the events too ([`StatementEvents`]).
    pub event_written: bool,
}

#[derive(FromQueryResult)]
struct WriteRow {
    organization_written: bool,
    member_inserted: bool,
    user_active: bool,
    event_written: bool,
    active_member_count: Option<i64>,
    billable_since: Option<i64>,
    role_key: Option<String>,
    permission_key: Option<String>,
}

fn cte_name(name: &str) -> Alias {
    Alias::new(name)
}

fn exists_in(cte: &str) -> Expr {
    Expr::exists(
        Query::select()
            .expr(literal(1))
            .from(cte_name(cte))
            .to_owned(),
    )
}

/// The membership insert of `row` when its role exists, selecting the
/// organization id from `organization` (a CTE with an `id`) or binding it.
fn membership_insert(
    row: &MembershipRow,
    organization: Option<&str>,
    condition: Option<Expr>,
) -> Result<InsertStatement, DbErr> {
    use memberships::Column as M;
    let mut select = Query::select();
    select.expr(Expr::val(row.id.clone()));
    match organization {
        Some(cte) => select
            .column((cte_name(cte), organizations::Column::Id))
            .from(cte_name(cte)),
        None => select.expr(Expr::val(row.organization_id.clone())),
    };
    // A comma join with a WHERE: `INSERT … SELECT … JOIN … ON …` followed by
    // `ON CONFLICT` would read ambiguously.
    select
        .from(roles::Entity)
        .and_where(Expr::col((roles::Entity, roles::Column::Key)).eq(row.role.clone()));
    if let Some(condition) = condition {
        select.and_where(condition);
    }
    select
        .expr(Expr::val(row.user_id.clone()))
        .column((roles::Entity, roles::Column::Key))
        .expr(Expr::val(row.public_metadata.clone()))
        .expr(Expr::val(row.private_metadata.clone()))
        .expr(Expr::val(row.create_time))
        .expr(Expr::val(row.update_time))
        .expr(Expr::val(row.revision));
    let mut insert = Query::insert();
    insert
        .into_table(memberships::Entity)
        .columns([
            M::Id,
            M::OrganizationId,
            M::UserId,
            M::Role,
            M::PublicMetadata,
            M::PrivateMetadata,
            M::CreateTime,
            M::UpdateTime,
            M::Revision,
        ])
        .select_from(select)
        .map_err(|err| DbErr::Custom(err.to_string()))?
        .on_conflict(OnConflict::new().do_nothing().to_owned());
    Ok(insert)
}

/// The answer row(s): the flags, the user's activity and the organization's
/// usage in `period`, and the role with each permission it grants.
fn answer(
    organization_id: Option<&str>,
    row: &MembershipRow,
    period: &str,
    (written, inserted): (Expr, Expr),
    event_written: Expr,
) -> SelectStatement {
    let one = Alias::new("one");
    let mut select = Query::select();
    select
        .expr_as(written, Alias::new("organization_written"))
        .expr_as(inserted, Alias::new("member_inserted"))
        .expr_as(user_active(row, period), Alias::new("user_active"))
        .expr_as(event_written, Alias::new("event_written"))
        .from_subquery(Query::select().expr(literal(1)).to_owned(), one)
        .join(
            JoinType::LeftJoin,
            roles::Entity,
            Expr::col((roles::Entity, roles::Column::Key)).eq(row.role.clone()),
        )
        .join(
            JoinType::LeftJoin,
            role_permissions::Entity,
            Expr::col((role_permissions::Entity, role_permissions::Column::RoleKey))
                .equals((roles::Entity, roles::Column::Key)),
        )
        .expr_as(
            Expr::col((roles::Entity, roles::Column::Key)),
            Alias::new("role_key"),
        )
        .expr_as(
            Expr::col((
                role_permissions::Entity,
                role_permissions::Column::PermissionKey,
            )),
            Alias::new("permission_key"),
        )
        .order_by(
            (
                role_permissions::Entity,
                role_permissions::Column::PermissionKey,
            ),
            Order::Asc,
        );
    match organization_id {
        Some(id) => select
            .join(
                JoinType::LeftJoin,
                usage::Entity,
                Condition::all()
                    .add(Expr::col((usage::Entity, usage::Column::OrganizationId)).eq(id))
                    .add(Expr::col((usage::Entity, usage::Column::Period)).eq(period)),
            )
            .expr_as(
                Expr::col((usage::Entity, usage::Column::ActiveMemberCount)),
                Alias::new("active_member_count"),
            )
            .expr_as(
                Expr::col((usage::Entity, usage::Column::BillableSince)),
                Alias::new("billable_since"),
            ),
        None => select
            .expr_as(
                Expr::val(Option::<i64>::None),
                Alias::new("active_member_count"),
            )
            .expr_as(Expr::val(Option::<i64>::None), Alias::new("billable_since")),
    };
    select
}

/// Whether the user of `row` is active in `period`.
fn user_active(row: &MembershipRow, period: &str) -> Expr {
    Expr::exists(
        Query::select()
            .expr(literal(1))
            .from(activity::Entity)
            .and_where(activity::Column::Period.eq(period))
            .and_where(activity::Column::UserId.eq(row.user_id.clone()))
            .to_owned(),
    )
}

async fn run(
    conn: &impl ConnectionTrait,
    with: WithClause,
    answer: SelectStatement,
) -> Result<MemberWrite, DbErr> {
    collect(conn.query_all(&answer.with(with)).await?)
}

/// SQLite: runs `writes` and then `answer` as one string, in one round trip.
async fn run_in_turn(
    conn: &impl ConnectionTrait,
    writes: Vec<(String, sea_orm::sea_query::Values)>,
    answer: SelectStatement,
) -> Result<MemberWrite, DbErr> {
    collect(in_turn(conn, writes, answer).await?)
}

/// SQLite: the rows of `writes` (statements that return rows return them
/// too) and then of `answer`, run as one string in one round trip.
async fn in_turn(
    conn: &impl ConnectionTrait,
    writes: Vec<(String, sea_orm::sea_query::Values)>,
    answer: SelectStatement,
) -> Result<Vec<sea_orm::QueryResult>, DbErr> {
    let statements = writes
        .into_iter()
        .chain([answer.build(SqliteQueryBuilder)])
        .map(|(sql, values)| Statement::from_sql_and_values(DbBackend::Sqlite, sql, values))
        .collect();
    conn.query_all_raw(store::one_string(statements)).await
}

/// The member write the answer rows tell.
fn collect(rows: Vec<sea_orm::QueryResult>) -> Result<MemberWrite, DbErr> {
    let rows: Vec<WriteRow> = rows
        .iter()
        .map(|row| WriteRow::from_query_result(row, ""))
        .collect::<Result<_, _>>()?;
    let mut write = MemberWrite::default();
    let mut permissions = Vec::new();
    let mut role = false;
    for row in rows {
        write.organization_written = row.organization_written;
        write.member_inserted = row.member_inserted;
        write.user_active = row.user_active;
        write.event_written = row.event_written;
        write.active_member_count = row.active_member_count.unwrap_or(0);
        write.billable = row.billable_since.is_some();
        role = row.role_key.is_some();
        permissions.extend(row.permission_key);
    }
    write.permissions = role.then_some(permissions);
    Ok(write)
}

/// Inserts a new organization with its creator's membership (`membership`,
/// when its role exists) and moves the organization count on one of its
/// rows, in one round trip, after [`lock_catalogue_and_users`] for the
/// creator; the answer says whether the creator is active in `period`.
/// Nothing is written when the organization's id, slug or external id is
/// taken (`organization_written` false), as
/// [`super::organizations::insert_new`].
pub async fn insert_organization_with_creator(
    conn: &impl ConnectionTrait,
    organization: &OrganizationRow,
    membership: &MembershipRow,
    period: &str,
    events: &StatementEvents,
) -> Result<MemberWrite, DbErr> {
    if conn.get_database_backend() != DbBackend::Postgres {
        return insert_organization_with_creator_in_turn(conn, organization, membership, period)
            .await;
    }
    let shard = super::billing::count_shard(DbBackend::Postgres);
    let (mut insert_organization, mut count) =
        organization_writes(organization, shard, exists_in("o"));
    insert_organization.returning_col(organizations::Column::Id);
    count.returning_col(billing_totals::Column::Id);
    let written = Condition::all()
        .add(exists_in("o"))
        .add(exists_in("m"))
        .add(user_active(membership, period).not());
    let with = WithClause::new()
        .cte(cte("o", insert_organization))
        .cte(cte("m", inserted_member(membership, Some("o"))?))
        .cte(cte("t", count))
        .cte(cte("e", events.insert(&membership.role, written)?))
        .to_owned();
    let flags = (exists_in("o"), exists_in("m"));
    run(
        conn,
        with,
        answer(None, membership, period, flags, exists_in("e")),
    )
    .await
}

/// SQLite: [`insert_organization_with_creator`] as statements in turn. The
/// organization's id is new, so it exists afterwards only if this insert
/// wrote it; the membership and the count follow only then.
async fn insert_organization_with_creator_in_turn(
    conn: &impl ConnectionTrait,
    organization: &OrganizationRow,
    membership: &MembershipRow,
    period: &str,
) -> Result<MemberWrite, DbErr> {
    let written = exists_row(
        organizations::Entity,
        organizations::Column::Id,
        &organization.id,
    );
    let shard = super::billing::count_shard(DbBackend::Sqlite);
    let (insert_organization, count) = organization_writes(organization, shard, written.clone());
    let writes = vec![
        insert_organization.build(SqliteQueryBuilder),
        membership_insert(membership, None, Some(written.clone()))?.build(SqliteQueryBuilder),
        count.build(SqliteQueryBuilder),
    ];
    let inserted = exists_row(memberships::Entity, memberships::Column::Id, &membership.id);
    run_in_turn(
        conn,
        writes,
        answer(
            None,
            membership,
            period,
            (written, inserted),
            Expr::val(false),
        ),
    )
    .await
}

/// The insert of a new organization (nothing when its id, slug or external
/// id is taken) and the move of the organization count on its row `shard`
/// when `inserted` (that the insert wrote the organization).
fn organization_writes(
    organization: &OrganizationRow,
    shard: Expr,
    inserted: Expr,
) -> (InsertStatement, UpdateStatement) {
    let insert = organizations::Entity::insert(organization.clone().into_active_model())
        .on_conflict(OnConflict::new().do_nothing().to_owned())
        .into_query();
    let mut count = Query::update();
    count
        .table(billing_totals::Entity)
        .value(
            billing_totals::Column::TotalOrganizations,
            Expr::col(billing_totals::Column::TotalOrganizations).add(1),
        )
        .and_where(Expr::col(billing_totals::Column::Id).eq(shard))
        .and_where(inserted);
    (insert, count)
}

/// The membership insert of a `WITH`, returning the new row's id.
fn inserted_member(
    row: &MembershipRow,
    organization: Option<&str>,
) -> Result<InsertStatement, DbErr> {
    let mut insert = membership_insert(row, organization, None)?;
    insert.returning_col(memberships::Column::Id);
    Ok(insert)
}

/// Whether `table` has a row whose `column` is `id`.
fn exists_row(table: impl IntoTableRef, column: impl IntoColumnRef, id: &str) -> Expr {
    Expr::exists(
        Query::select()
            .expr(literal(1))
            .from(table)
            .and_where(Expr::col(column).eq(id))
            .to_owned(),
    )
}

/// PostgreSQL: inserts `membership` (when its role exists and the user is
/// not a member yet) and takes its place in the organization (when it has
/// room), in one round trip, after [`lock_organization_and_users`]; the
/// answer says whether the user is active in `period` and the organization's
/// counters in it. SQLite: [`join_active`].
pub async fn insert_member(
    conn: &impl ConnectionTrait,
    membership: &MembershipRow,
    period: &str,
    events: &StatementEvents,
) -> Result<MemberWrite, DbErr> {
    debug_assert_eq!(conn.get_database_backend(), DbBackend::Postgres);
    let organization_id = membership.organization_id.as_str();
    let mut place = take_place(organization_id);
    place
        .and_where(exists_in("m"))
        .returning_col(organizations::Column::Id);
    let written = Condition::all()
        .add(exists_in("m"))
        .add(exists_in("p"))
        .add(user_active(membership, period).not());
    let with = WithClause::new()
        .cte(cte("m", inserted_member(membership, None)?))
        .cte(cte("p", place))
        .cte(cte("e", events.insert(&membership.role, written)?))
        .to_owned();
    let flags = (exists_in("p"), exists_in("m"));
    run(
        conn,
        with,
        answer(
            Some(organization_id),
            membership,
            period,
            flags,
            exists_in("e"),
        ),
    )
    .await
}

/// The update that takes a member's place in `organization_id`, where it
/// has room.
fn take_place(organization_id: &str) -> UpdateStatement {
    use organizations::Column as O;
    Query::update()
        .table(organizations::Entity)
        .value(O::MembersCount, Expr::col(O::MembersCount).add(1))
        .and_where(O::Id.eq(organization_id))
        .cond_where(super::organizations::has_room())
        .to_owned()
}

/// SQLite: [`insert_member`] for an organization not read yet (the writer's
/// transaction holds the database), in one round trip: the organization is
/// read first in the same string, and the
/// membership is inserted only while the organization exists and is active
/// (so nothing is written for one that does not, or is deactivated). `None`
/// when there is no such organization; else its row as it was before the
/// writes, and what they did.
pub async fn join_active(
    conn: &impl ConnectionTrait,
    membership: &MembershipRow,
    period: &str,
) -> Result<Option<(OrganizationRow, MemberWrite)>, DbErr> {
    use organizations::Column as O;
    debug_assert_eq!(conn.get_database_backend(), DbBackend::Sqlite);
    let organization_id = membership.organization_id.as_str();
    let read = organizations::Entity::find_by_id(organization_id)
        .into_query()
        .build(SqliteQueryBuilder);
    let active = Expr::exists(
        Query::select()
            .expr(literal(1))
            .from(organizations::Entity)
            .and_where(O::Id.eq(organization_id))
            .and_where(O::DeactivateTime.is_null())
            .to_owned(),
    );
    // The place is taken only for a membership this string inserted.
    let inserted = exists_row(memberships::Entity, memberships::Column::Id, &membership.id);
    let mut place = take_place(organization_id);
    place.and_where(inserted.clone());
    let writes = vec![
        read,
        membership_insert(membership, None, Some(active))?.build(SqliteQueryBuilder),
        place.build(SqliteQueryBuilder),
    ];
    // `changes()`: whether the place's UPDATE, the last write before the
    // answer, took one.
    let flags = (Expr::cust("changes() = 1"), inserted);
    let answer = answer(
        Some(organization_id),
        membership,
        period,
        flags,
        Expr::val(false),
    );
    let mut rows = in_turn(conn, writes, answer).await?;
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

fn cte(
    name: &str,
    query: impl Into<sea_orm::sea_query::SubQueryStatement>,
) -> CommonTableExpression {
    CommonTableExpression::new()
        .table_name(cte_name(name))
        .query(query)
        .to_owned()
}

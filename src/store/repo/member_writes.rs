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
//! last one answers. It takes no locks: its writer holds the database. That
//! string's text is built once and each call binds its values ([`in_turn`]).
//!
//! Locks are taken in the order every change that adds a member takes them:
//! the role catalogue (shared), then the organization's row, then the users'
//! billing locks in hash order.

use sea_orm::sea_query::{
    Alias, CommonTableExpression, Condition, Expr, ExprTrait, InsertStatement, IntoColumnRef,
    IntoTableRef, JoinType, OnConflict, Order, Query, SelectStatement, UpdateStatement, WithClause,
};
use sea_orm::{ConnectionTrait, DbBackend, DbErr, FromQueryResult, Iterable, ModelTrait, Value};

use super::billing::{advisory_locks_sql, user_lock_keys};
use super::memberships::MembershipRow;
use super::organizations::OrganizationRow;
use super::roles::CATALOGUE_LOCK;
use crate::store::entity::{
    billing_organization_usage as usage, billing_totals, billing_user_activity as activity,
    memberships, organizations, role_permissions, roles,
};
use crate::store::query::{literal, sqlite_param};
use crate::store::{self, fetch_all};

mod in_turn;
mod statement_events;
pub use in_turn::join_active;
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

/// The values of a new membership's statements, as expressions: bound with
/// the statement ([`MemberValues::bound`]), or the numbered parameters of a
/// statement built once ([`MemberValues::params`] and the values of a call,
/// [`MemberValues::values`]).
struct MemberValues {
    id: Expr,
    organization_id: Expr,
    user_id: Expr,
    role: Expr,
    public_metadata: Expr,
    private_metadata: Expr,
    create_time: Expr,
    update_time: Expr,
    revision: Expr,
    /// The billing period the answer reads the user's activity in.
    period: Expr,
}

impl MemberValues {
    /// How many values a membership's statements take.
    const COUNT: usize = 10;

    /// `row`'s values and `period`, in the order of the fields.
    fn values(row: &MembershipRow, period: &str) -> [Value; Self::COUNT] {
        [
            row.id.clone().into(),
            row.organization_id.clone().into(),
            row.user_id.clone().into(),
            row.role.clone().into(),
            row.public_metadata.clone().into(),
            row.private_metadata.clone().into(),
            row.create_time.into(),
            row.update_time.into(),
            row.revision.into(),
            period.into(),
        ]
    }

    /// The values from `expr` of each one's place in
    /// [`MemberValues::values`], called in that order.
    fn from(mut expr: impl FnMut(usize) -> Expr) -> Self {
        let mut place = 0;
        let mut next = || {
            place += 1;
            expr(place - 1)
        };
        // A struct expression evaluates its fields in the order written.
        MemberValues {
            id: next(),
            organization_id: next(),
            user_id: next(),
            role: next(),
            public_metadata: next(),
            private_metadata: next(),
            create_time: next(),
            update_time: next(),
            revision: next(),
            period: next(),
        }
    }

    /// `row`'s values and `period`, bound with the statement.
    fn bound(row: &MembershipRow, period: &str) -> Self {
        let values = Self::values(row, period);
        Self::from(|place| Expr::val(values[place].clone()))
    }

    /// SQLite parameters `first`… (see [`sqlite_param`]), which take
    /// [`MemberValues::values`] in turn.
    fn params(first: usize) -> Self {
        Self::from(|place| sqlite_param(first + place))
    }
}

/// The membership insert of `member` when its role exists, selecting the
/// organization id from `organization` (a CTE with an `id`) or binding it.
fn membership_insert(
    member: &MemberValues,
    organization: Option<&str>,
    condition: Option<Expr>,
) -> Result<InsertStatement, DbErr> {
    use memberships::Column as M;
    let mut select = Query::select();
    select.expr(member.id.clone());
    match organization {
        Some(cte) => select
            .column((cte_name(cte), organizations::Column::Id))
            .from(cte_name(cte)),
        None => select.expr(member.organization_id.clone()),
    };
    // A comma join with a WHERE: `INSERT … SELECT … JOIN … ON …` followed by
    // `ON CONFLICT` would read ambiguously.
    select
        .from(roles::Entity)
        .and_where(Expr::col((roles::Entity, roles::Column::Key)).eq(member.role.clone()));
    if let Some(condition) = condition {
        select.and_where(condition);
    }
    select
        .expr(member.user_id.clone())
        .column((roles::Entity, roles::Column::Key))
        .expr(member.public_metadata.clone())
        .expr(member.private_metadata.clone())
        .expr(member.create_time.clone())
        .expr(member.update_time.clone())
        .expr(member.revision.clone());
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
    organization_id: Option<Expr>,
    member: &MemberValues,
    (written, inserted): (Expr, Expr),
    event_written: Expr,
) -> SelectStatement {
    let one = Alias::new("one");
    let mut select = Query::select();
    select
        .expr_as(written, Alias::new("organization_written"))
        .expr_as(inserted, Alias::new("member_inserted"))
        .expr_as(user_active(member), Alias::new("user_active"))
        .expr_as(event_written, Alias::new("event_written"))
        .from_subquery(Query::select().expr(literal(1)).to_owned(), one)
        .join(
            JoinType::LeftJoin,
            roles::Entity,
            Expr::col((roles::Entity, roles::Column::Key)).eq(member.role.clone()),
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
                    .add(
                        Expr::col((usage::Entity, usage::Column::Period)).eq(member.period.clone()),
                    ),
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
                literal(Option::<i64>::None),
                Alias::new("active_member_count"),
            )
            .expr_as(literal(Option::<i64>::None), Alias::new("billable_since")),
    };
    select
}

/// Whether the user of `row` is active in `period`.
fn user_active(member: &MemberValues) -> Expr {
    Expr::exists(
        Query::select()
            .expr(literal(1))
            .from(activity::Entity)
            .and_where(
                Expr::col((activity::Entity, activity::Column::Period)).eq(member.period.clone()),
            )
            .and_where(
                Expr::col((activity::Entity, activity::Column::UserId)).eq(member.user_id.clone()),
            )
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
        return in_turn::insert_organization_with_creator(conn, organization, membership, period)
            .await;
    }
    let member = MemberValues::bound(membership, period);
    let shard = super::billing::count_shard(DbBackend::Postgres);
    let (mut insert_organization, mut count) = organization_writes(
        organization_values(organization).map(Expr::val),
        shard,
        exists_in("o"),
    )?;
    insert_organization.returning_col(organizations::Column::Id);
    count.returning_col(billing_totals::Column::Id);
    let written = Condition::all()
        .add(exists_in("o"))
        .add(exists_in("m"))
        .add(user_active(&member).not());
    let with = WithClause::new()
        .cte(cte("o", insert_organization))
        .cte(cte("m", inserted_member(&member, Some("o"))?))
        .cte(cte("t", count))
        .cte(cte("e", events.insert(&membership.role, written)?))
        .to_owned();
    let flags = (exists_in("o"), exists_in("m"));
    run(conn, with, answer(None, &member, flags, exists_in("e"))).await
}

/// The insert of a new organization (nothing when its id, slug or external
/// id is taken) and the move of the organization count on its row `shard`
/// when `inserted` (that the insert wrote the organization).
/// `organization` holds a value for each column, in the order of
/// [`organization_values`].
fn organization_writes(
    organization: impl IntoIterator<Item = Expr>,
    shard: Expr,
    inserted: Expr,
) -> Result<(InsertStatement, UpdateStatement), DbErr> {
    let mut insert = Query::insert();
    insert
        .into_table(organizations::Entity)
        .columns(organizations::Column::iter())
        .values(organization)
        .map_err(|err| DbErr::Custom(err.to_string()))?
        .on_conflict(OnConflict::new().do_nothing().to_owned());
    let mut count = Query::update();
    count
        .table(billing_totals::Entity)
        .value(
            billing_totals::Column::TotalOrganizations,
            Expr::col(billing_totals::Column::TotalOrganizations).add(literal(1)),
        )
        .and_where(Expr::col(billing_totals::Column::Id).eq(shard))
        .and_where(inserted);
    Ok((insert, count))
}

/// `organization`'s values, one for each of its columns in their order.
fn organization_values(organization: &OrganizationRow) -> impl Iterator<Item = Value> + '_ {
    organizations::Column::iter().map(|column| organization.get(column))
}

/// The membership insert of a `WITH`, returning the new row's id.
fn inserted_member(
    member: &MemberValues,
    organization: Option<&str>,
) -> Result<InsertStatement, DbErr> {
    let mut insert = membership_insert(member, organization, None)?;
    insert.returning_col(memberships::Column::Id);
    Ok(insert)
}

/// Whether `table` has a row whose `column` is `id`.
fn exists_row(table: impl IntoTableRef, column: impl IntoColumnRef, id: Expr) -> Expr {
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
    let member = MemberValues::bound(membership, period);
    let mut place = take_place(member.organization_id.clone());
    place
        .and_where(exists_in("m"))
        .returning_col(organizations::Column::Id);
    let written = Condition::all()
        .add(exists_in("m"))
        .add(exists_in("p"))
        .add(user_active(&member).not());
    let with = WithClause::new()
        .cte(cte("m", inserted_member(&member, None)?))
        .cte(cte("p", place))
        .cte(cte("e", events.insert(&membership.role, written)?))
        .to_owned();
    let flags = (exists_in("p"), exists_in("m"));
    let organization_id = member.organization_id.clone();
    run(
        conn,
        with,
        answer(Some(organization_id), &member, flags, exists_in("e")),
    )
    .await
}

/// The update that takes a member's place in the organization
/// `organization_id`, where it has room.
fn take_place(organization_id: Expr) -> UpdateStatement {
    use organizations::Column as O;
    Query::update()
        .table(organizations::Entity)
        .value(O::MembersCount, Expr::col(O::MembersCount).add(literal(1)))
        .and_where(Expr::col((organizations::Entity, O::Id)).eq(organization_id))
        .cond_where(super::organizations::has_room())
        .to_owned()
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

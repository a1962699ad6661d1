//! Storage: one code path for SQLite and PostgreSQL through SeaORM. Each table
//! has an entity (`entity`); the repository functions (`repo`) query it with
//! the SeaORM / sea-query builder and take `&impl ConnectionTrait`, so they run
//! inside the caller's transaction. Raw SQL remains only where the builder has
//! no words for it (PostgreSQL advisory locks), and in the helpers below that
//! the event log's own queries (`crate::events`) still use; raw SQL uses `$N`
//! placeholders, which both backends accept.

pub mod checkpoints;
pub mod entity;
mod error;
pub use error::{Fault, classify};
pub mod migrations;
pub(crate) mod query;
pub mod repo;
mod views;

pub use views::membership as membership_view;

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, FromQueryResult, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    Value,
};
use sea_orm_migration::MigratorTrait;

/// A database handle: a pool for PostgreSQL or for an SQLite file. An SQLite
/// file also gets one connection of its own for the group-committing writer
/// ([`Db::batch_connection`]); the pool then serves reads (WAL readers never
/// wait for the writer).
#[derive(Clone, Debug)]
pub struct Db {
    conn: DatabaseConnection,
    batch: Option<DatabaseConnection>,
}

impl Db {
    /// Connects with the default pool settings and `max_connections`.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, DbErr> {
        Self::connect_with(
            url,
            &PoolSettings {
                max_connections,
                ..PoolSettings::default()
            },
        )
        .await
    }

    /// Connects; SQLite connections get WAL with `synchronous=FULL` (a commit
    /// survives an operating-system crash, not only a process crash), a busy
    /// timeout and foreign keys; PostgreSQL connections get the
    /// `statement_timeout` of `settings`.
    pub async fn connect_with(url: &str, settings: &PoolSettings) -> Result<Db, DbErr> {
        // sqlx opens a pool's `min_connections` one after another before
        // it answers: 32 sessions with TLS took more than the acquire
        // timeout here. So the pool is created without a connection, one is
        // opened to fail as early (and with the same error) when the
        // database cannot be reached, and the rest open side by side, in
        // the background.
        let mut options = Self::options(url, settings);
        options.connect_lazy(true);
        let conn = Database::connect(options).await?;
        conn.ping().await?;
        warm(&conn, settings.min_connections());
        let file =
            url.starts_with("sqlite:") && !url.contains(":memory:") && !url.contains("mode=memory");
        let batch = if file {
            let writer = PoolSettings {
                max_connections: 1,
                ..settings.clone()
            };
            Some(Database::connect(Self::options(url, &writer)).await?)
        } else {
            None
        };
        Ok(Db { conn, batch })
    }

    fn options(url: &str, settings: &PoolSettings) -> ConnectOptions {
        /// How long a pooled connection may sit idle and still be handed out
        /// without a ping.
        const IDLE_BEFORE_PING: Duration = Duration::from_secs(5);
        let mut options = ConnectOptions::new(url.to_string());
        let statement_timeout = settings.statement_timeout;
        let max_connections = settings.max_connections.max(1);
        options
            .max_connections(max_connections)
            // Opened in the background as the pool starts, and reopened
            // when one is closed: calls do not wait for new connections.
            .min_connections(settings.min_connections())
            .acquire_timeout(settings.acquire_timeout)
            .connect_timeout(settings.acquire_timeout)
            // A connection in steady use is handed out as it is: a ping on
            // every checkout would cost every transaction a round trip. One
            // idle long enough to have been dropped by the server or a proxy
            // is pinged first.
            .test_before_acquire_if_idle_for(IDLE_BEFORE_PING)
            .sqlx_logging(false)
            .map_sqlx_postgres_opts(move |opts| match statement_timeout {
                Some(timeout) => {
                    opts.options([("statement_timeout", format!("{}ms", timeout.as_millis()))])
                }
                None => opts,
            })
            .map_sqlx_sqlite_opts(|opts| {
                use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
                opts.journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full)
                    .busy_timeout(Duration::from_secs(10))
                    .foreign_keys(true)
                    // Savepoint journals stay in memory: the group-committing
                    // writer nests a savepoint per change through a batch,
                    // and from 64 KiB on SQLite would write them to a
                    // temporary file, page by page.
                    .pragma("temp_store", "memory")
                    // The log is copied back by a task of its own, not by
                    // the commit of a batch (`checkpoints`).
                    .pragma(
                        "wal_autocheckpoint",
                        checkpoints::BACKSTOP_PAGES.to_string(),
                    )
            });
        options
    }

    /// The connection that only the group-committing writer uses: present
    /// for an SQLite file, where one writer at a time is all the database
    /// allows anyway.
    pub fn batch_connection(&self) -> Option<&DatabaseConnection> {
        self.batch.as_ref()
    }

    /// Begins the transaction of one batch of changes on the writer's own
    /// connection (`BEGIN IMMEDIATE`; each change then runs in a savepoint).
    pub async fn begin_batch(conn: &DatabaseConnection) -> Result<DatabaseTransaction, DbErr> {
        conn.begin_with_options(TransactionOptions {
            isolation_level: None,
            access_mode: None,
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
        })
        .await
    }

    pub fn conn(&self) -> &DatabaseConnection {
        &self.conn
    }

    pub fn backend(&self) -> DbBackend {
        self.conn.get_database_backend()
    }

    /// Begins a write transaction. On SQLite it takes the write lock at once
    /// (`BEGIN IMMEDIATE`), so a transaction that reads first cannot fail later
    /// with SQLITE_BUSY.
    pub async fn begin(&self) -> Result<DatabaseTransaction, DbErr> {
        self.conn
            .begin_with_options(TransactionOptions {
                isolation_level: None,
                access_mode: None,
                sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            })
            .await
    }

    /// Begins a read-only transaction whose reads all see one snapshot:
    /// REPEATABLE READ on PostgreSQL; on SQLite (WAL) a deferred transaction
    /// keeps the snapshot of its first read.
    pub async fn begin_snapshot(&self) -> Result<DatabaseTransaction, DbErr> {
        let postgres = self.backend() == DbBackend::Postgres;
        self.conn
            .begin_with_options(TransactionOptions {
                isolation_level: postgres.then_some(sea_orm::IsolationLevel::RepeatableRead),
                access_mode: postgres.then_some(sea_orm::AccessMode::ReadOnly),
                sqlite_transaction_mode: None,
            })
            .await
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> Result<(), DbErr> {
        migrations::Migrator::up(&self.conn, None).await
    }

    /// Whether the database answers.
    pub async fn ping(&self) -> bool {
        self.conn.ping().await.is_ok()
    }

    pub async fn close(self) {
        if let Some(batch) = self.batch {
            let _ = batch.close().await;
        }
        let _ = self.conn.close().await;
    }

    /// The connections of the pool right now, for the metrics.
    pub fn pool_status(&self) -> Option<PoolStatus> {
        use sea_orm::DatabaseConnectionType as Type;
        match &self.conn.inner {
            Type::SqlxPostgresPoolConnection(_) => {
                let pool = self.conn.get_postgres_connection_pool();
                Some(PoolStatus {
                    open: pool.size(),
                    idle: idle_count(pool.num_idle()),
                    max: pool.options().get_max_connections(),
                })
            }
            Type::SqlxSqlitePoolConnection(_) => {
                let pool = self.conn.get_sqlite_connection_pool();
                Some(PoolStatus {
                    open: pool.size(),
                    idle: idle_count(pool.num_idle()),
                    max: pool.options().get_max_connections(),
                })
            }
            _ => None,
        }
    }
}

/// How the pool connects and how long a caller waits for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolSettings {
    pub max_connections: u32,
    /// Connections opened when the pool starts and kept open; `None`: as
    /// many as `max_connections`.
    pub min_connections: Option<u32>,
    /// How long a call waits for a connection (and a new connection for the
    /// database) before it fails with UNAVAILABLE.
    pub acquire_timeout: Duration,
    /// PostgreSQL cancels a statement that runs longer (SQLSTATE 57014);
    /// `None` leaves the server's setting.
    pub statement_timeout: Option<Duration>,
}

impl PoolSettings {
    /// The connections the pool keeps open, at most `max_connections`.
    pub fn min_connections(&self) -> u32 {
        let max_connections = self.max_connections.max(1);
        self.min_connections
            .unwrap_or(max_connections)
            .min(max_connections)
    }
}

/// Opens `count` connections of `conn`'s pool side by side, in the
/// background, and leaves them idle in the pool; sqlx then keeps that many
/// open (`min_connections`), reopening one it closed for its age.
fn warm(conn: &DatabaseConnection, count: u32) {
    if count <= 1 {
        return;
    }
    match conn.get_database_backend() {
        DbBackend::Postgres => {
            let pool = conn.get_postgres_connection_pool().clone();
            tokio::spawn(open_side_by_side(pool, count));
        }
        DbBackend::Sqlite => {
            let pool = conn.get_sqlite_connection_pool().clone();
            tokio::spawn(open_side_by_side(pool, count));
        }
        _ => {}
    }
}

/// Holds `count` connections of `pool` at once, so that each is a new one
/// (a connection let go would be handed out again), then lets them go.
async fn open_side_by_side<D: sea_orm::sqlx::Database>(pool: sea_orm::sqlx::Pool<D>, count: u32) {
    let opened = futures::future::join_all((0..count).map(|_| pool.acquire())).await;
    let failures: Vec<&sea_orm::sqlx::Error> = opened
        .iter()
        .filter_map(|opened| opened.as_ref().err())
        // Busy with calls already, or closed: nothing to warn of.
        .filter(|err| {
            !matches!(
                err,
                sea_orm::sqlx::Error::PoolTimedOut | sea_orm::sqlx::Error::PoolClosed
            )
        })
        .collect();
    if let Some(first) = failures.first() {
        tracing::warn!(
            open = opened.iter().filter(|opened| opened.is_ok()).count(),
            wanted = count,
            failed = failures.len(),
            error = %first,
            "could not open every connection of the database pool; more open as calls need them"
        );
    }
    // The connections go back to the pool, idle.
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 10,
            min_connections: None,
            acquire_timeout: Duration::from_secs(2),
            statement_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Connections of a database pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Open connections, idle ones included.
    pub open: u32,
    /// Open connections not lent out.
    pub idle: u32,
    /// The most connections the pool opens.
    pub max: u32,
}

fn idle_count(idle: usize) -> u32 {
    u32::try_from(idle).unwrap_or(u32::MAX)
}

/// A statement with `$N` placeholders for whichever backend runs it.
pub fn statement(conn: &impl ConnectionTrait, sql: &str, values: Vec<Value>) -> Statement {
    Statement::from_sql_and_values(conn.get_database_backend(), sql, values)
}

/// SQLite: `statements` (built for SQLite, whose placeholders are `?`, bound
/// in order) as one string, run in one round trip; each runs only if the
/// ones before it succeeded.
pub fn one_string(statements: Vec<Statement>) -> Statement {
    let mut sql = String::new();
    let mut values = Vec::new();
    for statement in statements {
        debug_assert_eq!(statement.db_backend, DbBackend::Sqlite);
        if !sql.is_empty() {
            sql.push_str(";\n");
        }
        sql.push_str(&statement.sql);
        values.extend(statement.values.map(|bound| bound.0).unwrap_or_default());
    }
    Statement::from_sql_and_values(DbBackend::Sqlite, sql, values)
}

/// Runs a statement; returns the number of rows affected.
pub async fn execute(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<u64, DbErr> {
    Ok(conn
        .execute_raw(statement(conn, sql, values))
        .await?
        .rows_affected())
}

/// Runs a query and reads every row.
pub async fn fetch_all<T: FromQueryResult>(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<Vec<T>, DbErr> {
    let rows = conn.query_all_raw(statement(conn, sql, values)).await?;
    rows.iter()
        .map(|row| T::from_query_result(row, ""))
        .collect()
}

/// Runs a query returning one integer (a count, a sum).
pub async fn fetch_i64(
    conn: &impl ConnectionTrait,
    sql: &str,
    values: Vec<Value>,
) -> Result<i64, DbErr> {
    match conn.query_one_raw(statement(conn, sql, values)).await? {
        Some(row) => Ok(row.try_get_by_index::<Option<i64>>(0)?.unwrap_or(0)),
        None => Ok(0),
    }
}

/// Whether an error is a unique-constraint violation.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(
        err.sql_err(),
        Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
    )
}

/// Serializes transactions that name the same `key` until they end: an
/// advisory lock on PostgreSQL; SQLite write transactions are serialized
/// already.
pub async fn lock_key(conn: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        // Raw SQL: advisory locks are PostgreSQL functions the builder has no
        // form for.
        execute(
            conn,
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            vec![Value::from(key)],
        )
        .await?;
    }
    Ok(())
}

/// Like [`lock_key`], but shared: transactions that take `key` shared run
/// side by side, and all of them are serialized against one that takes it
/// with [`lock_key`].
pub async fn lock_key_shared(conn: &impl ConnectionTrait, key: &str) -> Result<(), DbErr> {
    if conn.get_database_backend() == DbBackend::Postgres {
        execute(
            conn,
            "SELECT pg_advisory_xact_lock_shared(hashtextextended($1, 0))",
            vec![Value::from(key)],
        )
        .await?;
    }
    Ok(())
}

/// Builds a `Vec<sea_orm::Value>` from expressions.
#[macro_export]
macro_rules! values {
    ($($value:expr),* $(,)?) => { vec![$(sea_orm::Value::from($value)),*] };
}

/// Builds raw SQL and its values together: [`Sql::bind`] adds a value and
/// writes its placeholder into the text at once, `$N` on PostgreSQL and `?`
/// on SQLite. SQLite reads `$N` as the name of a named parameter and
/// resolves each name against the ones before it: a statement of 1,001
/// values took 2.5 times as long to prepare as with `?`, which binds in the
/// order of appearance, the order in which `bind` writes them.
#[derive(Debug)]
pub struct Sql {
    postgres: bool,
    text: String,
    values: Vec<Value>,
}

impl Sql {
    pub fn new(backend: DbBackend, text: &str) -> Sql {
        Sql {
            postgres: backend == DbBackend::Postgres,
            text: text.to_string(),
            values: Vec::new(),
        }
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    /// Adds `value` and writes its placeholder.
    pub fn bind(&mut self, value: impl Into<Value>) -> &mut Self {
        use std::fmt::Write;
        self.values.push(value.into());
        if self.postgres {
            let _ = write!(self.text, "${}", self.values.len());
        } else {
            self.text.push('?');
        }
        self
    }

    /// The text and its values, for [`execute`] or [`fetch_all`].
    pub fn into_parts(self) -> (String, Vec<Value>) {
        (self.text, self.values)
    }
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
pub fn like_pattern(needle: &str) -> String {
    let mut escaped = String::from("%");
    for c in needle.chars() {
        if matches!(c, '%' | '_' | '\\') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    escaped.push('%');
    escaped
}

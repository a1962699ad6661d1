//! Where a change's statements run: a transaction of its own, or a savepoint
//! of its own in the group-committing writer's batch.
//!
//! In a batch the savepoint is opened by the change's first statement, not
//! before it: each statement is a round trip to the connection's worker
//! thread, and that hand-off, not SQLite, is what a change costs there. So
//! the first query of a change carries `SAVEPOINT` in front of it, in the
//! same round trip. Statements that answer a row count (`execute`) open it
//! in a round trip of their own instead: SQLite counts a `SAVEPOINT` as
//! having changed as many rows as the statement before it did, and the two
//! counts would be added up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sea_orm::{
    ConnectionTrait, DatabaseTransaction, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
};

/// Opens the savepoint a change runs in (inside the one before, if kept).
const OPEN_SAVEPOINT: &str = "SAVEPOINT orgs_unit";

/// What a change runs on.
pub(super) enum Scope {
    Own(DatabaseTransaction),
    Unit(Arc<BatchConn>),
}

/// The writer's batch transaction, as its changes see it: the next change's
/// savepoint is opened by that change's first statement.
pub(super) struct BatchConn {
    txn: DatabaseTransaction,
    /// No savepoint is open for the change that runs next: its first
    /// statement opens one.
    to_open: AtomicBool,
    /// A statement that was to open the savepoint failed in a way that
    /// leaves unknown whether it did: the batch cannot tell where its
    /// changes stand and must not be committed.
    unsure: AtomicBool,
}

impl BatchConn {
    pub(super) fn new(txn: DatabaseTransaction) -> Self {
        BatchConn {
            txn,
            to_open: AtomicBool::new(true),
            unsure: AtomicBool::new(false),
        }
    }

    /// The batch's transaction itself, for the writer's own statements.
    pub(super) fn txn(&self) -> &DatabaseTransaction {
        &self.txn
    }

    pub(super) fn into_txn(self) -> DatabaseTransaction {
        self.txn
    }

    /// Whether the change that just ran opened a savepoint (a change that
    /// ran no statement opened none).
    pub(super) fn opened(&self) -> bool {
        !self.to_open.load(Ordering::Acquire)
    }

    /// The next change needs a savepoint of its own (the one open now holds
    /// changes that stay).
    pub(super) fn open_next(&self) {
        self.to_open.store(true, Ordering::Release);
    }

    /// Whether a statement left it unknown whether the savepoint opened;
    /// clears the mark.
    pub(super) fn take_unsure(&self) -> bool {
        self.unsure.swap(false, Ordering::AcqRel)
    }

    fn take_opening(&self) -> bool {
        self.to_open.swap(false, Ordering::AcqRel)
    }

    /// `stmt`, with `SAVEPOINT` in front of it if it is the change's first;
    /// and whether it is.
    fn opening(&self, mut stmt: Statement) -> (bool, Statement) {
        let opening = self.take_opening();
        if opening {
            stmt.sql = format!("{OPEN_SAVEPOINT}; {}", stmt.sql);
        }
        (opening, stmt)
    }

    /// Marks the batch unsure after `err` from a statement that opened the
    /// savepoint, unless the error proves the statement after it ran: a
    /// constraint that refused a row, or an error raised after the database
    /// answered.
    fn check<T>(&self, opening: bool, result: Result<T, DbErr>) -> Result<T, DbErr> {
        if opening
            && let Err(err) = &result
            && !ran_after_opening(err)
        {
            self.unsure.store(true, Ordering::Release);
        }
        result
    }

    /// Opens the savepoint in a round trip of its own, if the change has
    /// not yet: before a statement whose row count is answered.
    async fn open_alone(&self) -> Result<(), DbErr> {
        if !self.take_opening() {
            return Ok(());
        }
        let opened = self.txn.execute_unprepared(OPEN_SAVEPOINT).await.map(drop);
        self.check(true, opened)
    }
}

/// Whether an error of a statement list that began with `SAVEPOINT` shows
/// that the savepoint was opened: SQLite runs the list in order and stops at
/// the first failure, and a `SAVEPOINT` inside a transaction fails only
/// when the database itself does (out of memory, input/output), never on a
/// constraint.
fn ran_after_opening(err: &DbErr) -> bool {
    /// SQLite's primary result code of a constraint violation.
    const SQLITE_CONSTRAINT: i64 = 19;
    match err {
        DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => {
            match sqlx.as_ref() {
                sea_orm::sqlx::Error::Database(database) => database
                    .code()
                    .and_then(|code| code.parse::<i64>().ok())
                    .is_some_and(|code| code & 0xff == SQLITE_CONSTRAINT),
                sea_orm::sqlx::Error::RowNotFound => true,
                _ => false,
            }
        }
        DbErr::Conn(_) | DbErr::ConnectionAcquire(_) => false,
        // Raised by SeaORM from what the database answered.
        _ => true,
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for Scope {
    fn get_database_backend(&self) -> DbBackend {
        match self {
            Scope::Own(txn) => txn.get_database_backend(),
            Scope::Unit(conn) => conn.txn.get_database_backend(),
        }
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        match self {
            Scope::Own(txn) => txn.execute_raw(stmt).await,
            Scope::Unit(conn) => {
                conn.open_alone().await?;
                conn.txn.execute_raw(stmt).await
            }
        }
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        match self {
            Scope::Own(txn) => txn.execute_unprepared(sql).await,
            Scope::Unit(conn) => {
                conn.open_alone().await?;
                conn.txn.execute_unprepared(sql).await
            }
        }
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        match self {
            Scope::Own(txn) => txn.query_one_raw(stmt).await,
            Scope::Unit(conn) => {
                let (opening, stmt) = conn.opening(stmt);
                conn.check(opening, conn.txn.query_one_raw(stmt).await)
            }
        }
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        match self {
            Scope::Own(txn) => txn.query_all_raw(stmt).await,
            Scope::Unit(conn) => {
                let (opening, stmt) = conn.opening(stmt);
                conn.check(opening, conn.txn.query_all_raw(stmt).await)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use sea_orm::{Database, TransactionTrait};

    use super::*;

    /// A batch on an SQLite database in memory, with a table of three rows
    /// and one statement already run in the batch that changed all three.
    async fn batch() -> (sea_orm::DatabaseConnection, Scope) {
        let db = Database::connect("sqlite::memory:").await.expect("connect");
        db.execute_unprepared(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
             INSERT INTO t (id, n) VALUES (1, 0), (2, 0), (3, 0);",
        )
        .await
        .expect("table");
        let txn = db.begin().await.expect("begin");
        txn.execute_unprepared("UPDATE t SET n = n + 1")
            .await
            .expect("update all");
        (db, Scope::Unit(Arc::new(BatchConn::new(txn))))
    }

    fn conn(scope: &Scope) -> &BatchConn {
        match scope {
            Scope::Unit(conn) => conn,
            Scope::Own(_) => unreachable!(),
        }
    }

    fn sql(text: &str) -> Statement {
        Statement::from_string(DbBackend::Sqlite, text)
    }

    #[tokio::test]
    async fn a_row_count_is_the_statements_own_when_it_opens_the_savepoint() {
        let (_db, scope) = batch().await;
        // SQLite answers a SAVEPOINT with the count of the statement before
        // it (3 here); run in front of this one, it would be added to its 0.
        let changed = scope
            .execute_raw(sql("UPDATE t SET n = 9 WHERE id = 42"))
            .await
            .expect("update none");
        assert_eq!(changed.rows_affected(), 0);
        assert!(conn(&scope).opened());
    }

    #[tokio::test]
    async fn a_query_opens_the_savepoint_and_a_rollback_to_it_keeps_what_came_before() {
        let (_db, scope) = batch().await;
        let rows = scope
            .query_all_raw(sql("UPDATE t SET n = 100 WHERE id = 1 RETURNING n"))
            .await
            .expect("update one");
        assert_eq!(rows.len(), 1);
        assert!(conn(&scope).opened());
        conn(&scope)
            .txn()
            .execute_unprepared("ROLLBACK TO orgs_unit")
            .await
            .expect("roll back the change");
        let sum = conn(&scope)
            .txn()
            .query_one_raw(sql("SELECT sum(n) AS s FROM t"))
            .await
            .expect("sum")
            .expect("a row");
        // The batch's earlier update stays; the change's is gone.
        assert_eq!(sum.try_get::<i64>("", "s").expect("s"), 3);
    }

    #[tokio::test]
    async fn a_refused_row_shows_that_the_savepoint_opened() {
        let (_db, scope) = batch().await;
        let refused = scope
            .query_all_raw(sql("INSERT INTO t (id, n) VALUES (1, 0) RETURNING id"))
            .await;
        assert!(refused.is_err());
        assert!(conn(&scope).opened());
        assert!(!conn(&scope).take_unsure());
    }

    #[tokio::test]
    async fn any_other_failure_leaves_the_batch_unsure() {
        let (_db, scope) = batch().await;
        let failed = scope
            .query_one_raw(sql("SELECT no_such_column FROM t"))
            .await;
        assert!(failed.is_err());
        assert!(conn(&scope).take_unsure());
        assert!(!conn(&scope).take_unsure(), "the mark is cleared once read");
    }

    #[tokio::test]
    async fn only_the_first_statement_of_a_change_opens_a_savepoint() {
        let (_db, scope) = batch().await;
        scope
            .query_one_raw(sql("SELECT n FROM t WHERE id = 1"))
            .await
            .expect("first");
        // A second SAVEPOINT of the same name would nest: a rollback would
        // then keep the first statement's changes.
        scope
            .execute_raw(sql("UPDATE t SET n = 50 WHERE id = 2"))
            .await
            .expect("second");
        conn(&scope)
            .txn()
            .execute_unprepared("ROLLBACK TO orgs_unit; RELEASE orgs_unit")
            .await
            .expect("roll back");
        // No savepoint is left: the change opened exactly one.
        assert!(
            conn(&scope)
                .txn()
                .execute_unprepared("RELEASE orgs_unit")
                .await
                .is_err()
        );
    }
}

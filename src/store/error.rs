//! What a database error means to a caller. The domain knows no SQL crate, so
//! the mapping from driver errors to [`Error`] lives here, at the border:
//! [`classify`] sorts a [`DbErr`] into a [`Fault`] by its kind and SQLSTATE
//! (PostgreSQL) or result code (SQLite), never by its message.

use sea_orm::{DbErr, RuntimeErr, TransactionError};

use crate::domain::{Error, Reason};

/// What kind of failure a database error is, as far as a caller cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The database cannot serve now: unreachable, connection lost, busy or
    /// locked (SQLite), a statement cancelled by `statement_timeout`, out of
    /// connections, or no pooled connection within the acquire timeout.
    Unavailable,
    /// The transaction lost a race with another one (serialization failure,
    /// deadlock); running it again may succeed.
    Conflict,
    /// Anything else: a bug or a broken invariant.
    Other,
}

/// PostgreSQL SQLSTATE codes of a transaction that lost a race.
const POSTGRES_CONFLICT: &[&str] = &["40001", "40P01"];
/// PostgreSQL SQLSTATE codes, and classes (two characters), of a database
/// that cannot serve now: connection exceptions (08), insufficient resources
/// (53), operator intervention (57: query_canceled by `statement_timeout`,
/// admin shutdown, cannot connect now) and lock_not_available (55P03).
const POSTGRES_UNAVAILABLE_CLASSES: &[&str] = &["08", "53", "57"];
const POSTGRES_UNAVAILABLE: &[&str] = &["55P03"];
/// SQLite primary result codes (the low byte of the extended code) of a
/// database that is busy: SQLITE_BUSY, SQLITE_LOCKED.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;

/// Sorts a database error by what a caller can do about it.
pub fn classify(err: &DbErr) -> Fault {
    match err {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Fault::Unavailable,
        DbErr::Exec(RuntimeErr::SqlxError(sqlx)) | DbErr::Query(RuntimeErr::SqlxError(sqlx)) => {
            classify_sqlx(sqlx)
        }
        _ => Fault::Other,
    }
}

fn classify_sqlx(err: &sea_orm::sqlx::Error) -> Fault {
    use sea_orm::sqlx::Error as Sqlx;
    match err {
        Sqlx::Io(_)
        | Sqlx::Tls(_)
        | Sqlx::Protocol(_)
        | Sqlx::PoolTimedOut
        | Sqlx::PoolClosed
        | Sqlx::WorkerCrashed
        | Sqlx::BeginFailed => Fault::Unavailable,
        Sqlx::Database(db) => {
            let Some(code) = db.code() else {
                return Fault::Other;
            };
            let code = code.as_ref();
            if code.len() == 5 {
                postgres_fault(code)
            } else {
                sqlite_fault(code)
            }
        }
        _ => Fault::Other,
    }
}

fn postgres_fault(sqlstate: &str) -> Fault {
    if POSTGRES_CONFLICT.contains(&sqlstate) {
        Fault::Conflict
    } else if POSTGRES_UNAVAILABLE.contains(&sqlstate)
        || POSTGRES_UNAVAILABLE_CLASSES
            .iter()
            .any(|class| sqlstate.starts_with(class))
    {
        Fault::Unavailable
    } else {
        Fault::Other
    }
}

fn sqlite_fault(code: &str) -> Fault {
    match code.parse::<i64>() {
        Ok(extended) if matches!(extended & 0xff, SQLITE_BUSY | SQLITE_LOCKED) => {
            Fault::Unavailable
        }
        _ => Fault::Other,
    }
}

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match classify(&err) {
            Fault::Unavailable => {
                tracing::warn!(error = %err, "database unavailable");
                Error::Unavailable(
                    Reason::DatabaseUnavailable,
                    "the database is unavailable; retry later".into(),
                )
            }
            Fault::Conflict => Error::Aborted(
                Reason::SerializationFailure,
                "the change conflicted with concurrent changes; retry".into(),
            ),
            Fault::Other => Error::Internal(err.to_string()),
        }
    }
}

impl From<TransactionError<Error>> for Error {
    fn from(err: TransactionError<Error>) -> Self {
        match err {
            TransactionError::Connection(db) => db.into(),
            TransactionError::Transaction(e) => e,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_codes_are_sorted_by_what_a_caller_can_do() {
        assert_eq!(postgres_fault("40001"), Fault::Conflict);
        assert_eq!(postgres_fault("40P01"), Fault::Conflict);
        assert_eq!(postgres_fault("57014"), Fault::Unavailable);
        assert_eq!(postgres_fault("57P01"), Fault::Unavailable);
        assert_eq!(postgres_fault("08006"), Fault::Unavailable);
        assert_eq!(postgres_fault("53300"), Fault::Unavailable);
        assert_eq!(postgres_fault("55P03"), Fault::Unavailable);
        assert_eq!(postgres_fault("23503"), Fault::Other);
        assert_eq!(postgres_fault("23505"), Fault::Other);
    }

    #[test]
    fn sqlite_busy_and_locked_are_unavailable_with_their_extended_codes() {
        assert_eq!(sqlite_fault("5"), Fault::Unavailable);
        assert_eq!(sqlite_fault("517"), Fault::Unavailable);
        assert_eq!(sqlite_fault("6"), Fault::Unavailable);
        assert_eq!(sqlite_fault("262"), Fault::Unavailable);
        assert_eq!(sqlite_fault("787"), Fault::Other);
        assert_eq!(sqlite_fault("19"), Fault::Other);
    }

    #[test]
    fn a_pool_timeout_is_unavailable() {
        let err = DbErr::ConnectionAcquire(sea_orm::error::ConnAcquireErr::Timeout);
        assert_eq!(classify(&err), Fault::Unavailable);
        assert!(matches!(
            Error::from(err),
            Error::Unavailable(Reason::DatabaseUnavailable, _)
        ));
    }
}

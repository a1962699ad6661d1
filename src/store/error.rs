//! What a database error means to a caller. The domain knows no SQL crate, so
//! the mapping from driver errors to [`Error`] lives here, at the border.

use sea_orm::{DbErr, TransactionError};

use crate::domain::{Error, Reason};

impl From<DbErr> for Error {
    fn from(err: DbErr) -> Self {
        match &err {
            DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => Error::Unavailable(
                Reason::DatabaseUnavailable,
                "the database is unavailable; retry later".into(),
            ),
            _ => Error::Internal(err.to_string()),
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

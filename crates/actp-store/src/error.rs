//! What can go wrong with a store, each with what to do about it.

use std::path::PathBuf;

/// A storage failure. The source error is kept (`std::error::Error::source`).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A sled database is open in another process (sled opens a database in one process only).
    #[error(
        "the database at {} is in use by another process: stop it, or share the state through PostgreSQL (--store postgres://…)",
        path.display()
    )]
    Locked {
        /// The database's directory.
        path: PathBuf,
    },
    /// A sled database could not be opened or used.
    #[error("sled database at {}: {source}", path.display())]
    Sled {
        /// The database's directory.
        path: PathBuf,
        /// What sled said.
        #[source]
        source: sled::Error,
    },
    /// An operation on an open sled database failed.
    #[error("sled: {0}")]
    SledOp(#[from] sled::Error),
    /// The paywall's write-ahead journal could not be written or read.
    #[error("journal: {0}")]
    Journal(String),
    /// The PostgreSQL server refused or failed a statement.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] tokio_postgres::Error),
    /// No connection could be had from the pool (the server is down or unreachable, or every connection is
    /// busy for too long).
    #[error("cannot get a PostgreSQL connection (is the server up and the URL right?): {0}")]
    Pool(#[from] deadpool_postgres::PoolError),
    /// A migration of the schema failed; nothing after it was applied.
    #[error("migration {version} ({name}) failed: {source}")]
    Migration {
        /// Its number.
        version: i32,
        /// Its file name.
        name: &'static str,
        /// What the server said.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The schema in the database is newer than this program knows: upgrade the program.
    #[error(
        "the database's schema is at version {found}, newer than this program's {known}: upgrade actp"
    )]
    SchemaTooNew {
        /// The version found.
        found: i32,
        /// The newest this program has.
        known: i32,
    },
    /// The store URL does not parse.
    #[error("not a store: {0}")]
    Url(String),
    /// The store holds the state of another chain or kernel than the one asked for.
    #[error(
        "this store belongs to {found}, not {expected}: use another data directory or database"
    )]
    WrongOwner {
        /// What the store holds.
        found: String,
        /// What was asked.
        expected: String,
    },
    /// A record that does not decode: the database was written by something else, or damaged.
    #[error("corrupt record in {what}: {detail}")]
    Corrupt {
        /// Where.
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },
    /// A blocking task (sled's flush) could not finish.
    #[error("storage task failed: {0}")]
    Task(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(e: serde_json::Error) -> Self {
        StoreError::Corrupt {
            what: "a record",
            detail: e.to_string(),
        }
    }
}

impl StoreError {
    /// The error for sled failing on the database in `path`, recognising a database locked by another
    /// process (sled reports it as an I/O error from its lock file).
    pub fn sled(path: impl Into<PathBuf>, source: sled::Error) -> Self {
        let path = path.into();
        match &source {
            sled::Error::Io(io) if io.kind() == std::io::ErrorKind::WouldBlock => {
                StoreError::Locked { path }
            }
            sled::Error::Io(io)
                if io.to_string().contains("lock") || io.to_string().contains("in use") =>
            {
                StoreError::Locked { path }
            }
            _ => StoreError::Sled { path, source },
        }
    }

    /// Whether retrying later may succeed (a connection problem, not a bad record or schema).
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Pool(_) => true,
            StoreError::Postgres(e) => e.is_closed() || e.code().is_none(),
            _ => false,
        }
    }
}

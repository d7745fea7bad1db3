//! Reaching a PostgreSQL database: the URL read into a client
//! configuration, a pool of connections, and what the server's errors mean
//! to the people who see them.

use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::Error;

/// A database and the pool of connections to it.
pub(crate) struct Database {
    pub(crate) pool: Pool,
    pub(crate) config: tokio_postgres::Config,
    /// `HOST:PORT/DBNAME`, for messages: never the password.
    pub(crate) place: String,
}

impl Database {
    /// Reads `url` (`postgres://USER@HOST:PORT/DBNAME?...`) and makes a pool
    /// of up to `connections`; nothing is connected until first use.
    pub(crate) fn new(
        url: &str,
        schema: Option<&str>,
        connections: usize,
        connect_timeout: Duration,
    ) -> Result<Database, Error> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| Error::Postgres {
            place: "(the store URL)".to_owned(),
            message: "the URL does not read as postgres://USER@HOST:PORT/DBNAME".to_owned(),
            source: Some(Box::new(error)),
        })?;
        if let Some(schema) = schema {
            config.options(format!("-c search_path={schema}"));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("baton");
        }
        let place = place(&config);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections.max(2))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(connect_timeout))
            .wait_timeout(Some(connect_timeout * 2))
            .build()
            .map_err(|error| Error::Postgres {
                place: place.clone(),
                message: "cannot make a pool of connections".to_owned(),
                source: Some(Box::new(error)),
            })?;
        Ok(Database {
            pool,
            config,
            place,
        })
    }

    /// A connection from the pool.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, Error> {
        self.pool.get().await.map_err(|error| {
            let message = pool_message(&error);
            match error {
                // The pool's own message repeats the server's: the cause
                // is the server's error.
                deadpool_postgres::PoolError::Backend(cause) => self.failure(message, cause),
                other => self.failure(message, other),
            }
        })
    }

    /// The store's error for a failed request.
    pub(crate) fn error(&self, error: tokio_postgres::Error) -> Error {
        self.failure(request_message(&error), error)
    }

    /// The store's error for what baton itself found wrong.
    pub(crate) fn failure_message(&self, message: &str) -> Error {
        Error::Postgres {
            place: self.place.clone(),
            message: message.to_owned(),
            source: None,
        }
    }

    pub(crate) fn failure(
        &self,
        message: &str,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Error {
        Error::Postgres {
            place: self.place.clone(),
            message: message.to_owned(),
            source: Some(Box::new(source)),
        }
    }
}

/// What it means that no connection could be had.
pub(crate) fn pool_message(error: &deadpool_postgres::PoolError) -> &'static str {
    match error {
        deadpool_postgres::PoolError::Timeout(_) => "timed out waiting for a connection",
        _ => "cannot connect",
    }
}

/// What a failed request means to whoever reads it.
pub(crate) fn request_message(error: &tokio_postgres::Error) -> &'static str {
    match error.code() {
        Some(code) if *code == SqlState::READ_ONLY_SQL_TRANSACTION => {
            "the database is read-only (a standby?); nothing was written"
        }
        Some(code) if *code == SqlState::DISK_FULL => {
            "the database server's disk is full; nothing of the failed write was kept"
        }
        Some(_) => "the request failed",
        None if error.is_closed() => "the connection was lost",
        None => "the request failed",
    }
}

/// Whether a request that failed this way may succeed when sent again: the
/// connection broke or the server is restarting, or the transaction lost a
/// race it can win next time.
pub(crate) fn transient(error: &tokio_postgres::Error) -> bool {
    match error.code() {
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "40001"
                || code == "40P01"
                || code == "53300"
        }
    }
}

fn place(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        Some(tokio_postgres::config::Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let database = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{database}")
}

/// Whether `name` may be used as a schema name unquoted.
pub(crate) fn is_schema_name(name: &str) -> bool {
    (1..=48).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

//! Where the record lives (`--state-dir`, `$BATON_HOME`, `--store`), and
//! how a run another process owns is refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use baton_engine::{Engine, EngineConfig};
use baton_store::{PostgresOptions, PostgresStore, SqliteStore, Store};

use crate::config::{Config, ConfigArgs, StoreSettings};

/// Where baton keeps its files and its run store.
#[derive(clap::Args)]
pub(crate) struct Home {
    /// Where run files (logs, outputs, the run store) go.
    #[arg(long, env = "BATON_HOME", default_value = ".baton", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// Where runs are recorded: a SQLite file, or a PostgreSQL database
    /// (`postgres://USER@HOST:PORT/DB`) that server replicas share
    /// [default: `[store] url` in baton.toml, else STATE_DIR/baton.db].
    #[arg(long, value_name = "PATH|URL")]
    store: Option<String>,
    /// Every command that opens the record reads the same settings.
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

impl Home {
    /// An engine recording into this home's store, with the settings of
    /// `baton.toml` and `BATON_ENGINE__*`.
    pub(crate) async fn engine(&self) -> anyhow::Result<Engine> {
        let settings = self.settings()?;
        self.engine_with(settings.engine_config(), &settings.store)
            .await
    }

    /// The settings in effect (read once per command).
    pub(crate) fn settings(&self) -> anyhow::Result<Config> {
        self.config.load()
    }

    /// [`Home::engine`], with `config`'s settings but this home's files,
    /// recording where `--store`, else `store`, says.
    pub(crate) async fn engine_with(
        &self,
        config: EngineConfig,
        store: &StoreSettings,
    ) -> anyhow::Result<Engine> {
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("cannot create {}", self.state_dir.display()))?;
        let store = self
            .store(store)
            .await
            .context("cannot open the run store")?;
        Ok(Engine::with_store(
            EngineConfig {
                state_dir: self.state_dir.clone(),
                ..config
            },
            store,
        ))
    }

    /// The store `--store`, else `[store] url`, names; else the SQLite file
    /// in the state directory.
    async fn store(&self, settings: &StoreSettings) -> anyhow::Result<Arc<dyn Store>> {
        let named = self.store.clone().or_else(|| settings.url.clone());
        let default = self.state_dir.join("baton.db").display().to_string();
        open(named.as_deref().unwrap_or(&default), settings.connections).await
    }
}

/// The store `named` names: a PostgreSQL database (`postgres://...`,
/// with up to `connections` connections), else a SQLite file.
pub(crate) async fn open(named: &str, connections: usize) -> anyhow::Result<Arc<dyn Store>> {
    Ok(
        if named.starts_with("postgres://") || named.starts_with("postgresql://") {
            let options = PostgresOptions {
                connections,
                ..PostgresOptions::default()
            };
            Arc::new(PostgresStore::connect_with(named, options).await?)
        } else {
            Arc::new(SqliteStore::open(named)?)
        },
    )
}

/// A run another live process drives is left to it: said plainly, exit 1.
pub(crate) fn refused(error: baton_engine::Error) -> anyhow::Result<ExitCode> {
    match error {
        baton_engine::Error::Store(baton_store::Error::Owned { run, ownership }) => {
            eprintln!(
                "error: run {run} is {ownership}; it goes on there and was not resumed here \
                 (`baton cancel {run}` stops it)"
            );
            Ok(ExitCode::FAILURE)
        }
        other => Err(other.into()),
    }
}

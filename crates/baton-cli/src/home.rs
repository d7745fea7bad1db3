//! Where the record lives (`--state-dir`, `$BATON_HOME`, `--store`), and
//! how a run another process owns is refused.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use baton_engine::{Engine, EngineConfig};
use baton_store::SqliteStore;

use crate::config::ConfigArgs;

/// Where baton keeps its files and its run store.
#[derive(clap::Args)]
pub(crate) struct Home {
    /// Where run files (logs, outputs, the run store) go.
    #[arg(long, env = "BATON_HOME", default_value = ".baton", value_name = "DIR")]
    pub(crate) state_dir: PathBuf,
    /// The SQLite file runs are recorded in [default: STATE_DIR/baton.db].
    #[arg(long, value_name = "PATH")]
    store: Option<PathBuf>,
    /// Every command that opens the record reads the same settings.
    #[command(flatten)]
    pub(crate) config: ConfigArgs,
}

impl Home {
    /// An engine recording into this home's store, with the settings of
    /// `baton.toml` and `BATON_ENGINE__*`.
    pub(crate) fn engine(&self) -> anyhow::Result<Engine> {
        self.engine_with(self.settings()?)
    }

    /// The engine's configuration as the settings say.
    pub(crate) fn settings(&self) -> anyhow::Result<EngineConfig> {
        Ok(self.config.load()?.engine_config())
    }

    /// [`Home::engine`], with `config`'s settings but this home's files.
    pub(crate) fn engine_with(&self, config: EngineConfig) -> anyhow::Result<Engine> {
        std::fs::create_dir_all(&self.state_dir)
            .with_context(|| format!("cannot create {}", self.state_dir.display()))?;
        let path = self
            .store
            .clone()
            .unwrap_or_else(|| self.state_dir.join("baton.db"));
        let store = SqliteStore::open(&path).context("cannot open the run store")?;
        Ok(Engine::with_store(
            EngineConfig {
                state_dir: self.state_dir.clone(),
                ..config
            },
            Arc::new(store),
        ))
    }
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

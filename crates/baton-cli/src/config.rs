//! Settings from `baton.toml` (or `--config PATH`, `$BATON_CONFIG`) and
//! `BATON_`-prefixed environment variables (`BATON_SERVER__BIND`: two
//! underscores between a section and its key; a value is read as TOML,
//! else as a string); flags beat both. `baton config` prints what is in
//! effect. Read with the `toml` crate and twenty lines of overlay rather
//! than figment, whose proc-macros cost build time for one file.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use baton_core::Duration;
use baton_engine::EngineConfig;
use serde::{Deserialize, Serialize};

/// Where the settings come from.
#[derive(clap::Args, Clone, Debug)]
pub(crate) struct ConfigArgs {
    /// The settings file [default: ./baton.toml, if it exists].
    #[arg(long = "config", env = "BATON_CONFIG", value_name = "PATH")]
    path: Option<PathBuf>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Config {
    pub(crate) store: StoreSettings,
    pub(crate) server: Server,
    pub(crate) engine: Engine,
    pub(crate) retention: Retention,
    /// Where `baton serve` publishes events besides its own streams.
    pub(crate) events: Events,
    /// Agent capabilities served through OpenAI-compatible endpoints
    /// (`[agents.summarize]`), by capability.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) agents: std::collections::BTreeMap<String, baton_engine::AgentProvider>,
    /// When a remote host's circuit breaker opens, and for how long.
    pub(crate) breaker: baton_engine::BreakerSettings,
    /// How `baton serve` leases work to remote workers and judges them.
    pub(crate) workers: baton_engine::WorkerSettings,
    /// Where `baton serve` exports traces.
    pub(crate) telemetry: Telemetry,
    /// Webhooks `baton serve` takes (`[triggers.NAME]`), each starting a
    /// registered workflow when its body is signed with its secret.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub(crate) triggers: std::collections::BTreeMap<String, baton_server::Trigger>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Server {
    pub(crate) bind: SocketAddr,
    /// The largest request body accepted, in bytes.
    pub(crate) body_limit: usize,
    /// Accept requests without an API key (a laptop only).
    pub(crate) insecure_no_auth: bool,
    /// Connections served at once; more wait to be accepted.
    pub(crate) max_connections: usize,
    /// How long a connection may take to send a request's headers, or sit
    /// idle between requests, before it is closed.
    pub(crate) header_read_timeout: Duration,
    /// Host names the server answers to besides IP addresses and
    /// `localhost` (what clients put in the URL).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) allowed_hosts: Vec<String>,
    /// Runs served at once; more starts are answered 429.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) max_active_runs: Option<usize>,
    /// After SIGTERM, how long attempts in flight may go on finishing
    /// before they are stopped and their runs handed back.
    pub(crate) drain_grace: Duration,
}

impl Default for Server {
    fn default() -> Server {
        let defaults = baton_server::ServerConfig::default();
        Server {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            body_limit: defaults.body_limit,
            insecure_no_auth: false,
            max_connections: defaults.max_connections,
            header_read_timeout: Duration::from_millis(
                defaults.header_read_timeout.as_millis() as u64
            ),
            allowed_hosts: defaults.allowed_hosts,
            max_active_runs: defaults.max_active_runs,
            drain_grace: Duration::from_secs(30),
        }
    }
}

/// `[telemetry]`: traces of runs, attempts and API requests, exported to
/// an OpenTelemetry collector over OTLP/HTTP when an endpoint is named.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Telemetry {
    /// The collector's OTLP/HTTP base URL (`http://collector:4318`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub(crate) service_name: String,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            otlp_endpoint: None,
            service_name: "baton".to_owned(),
        }
    }
}

/// What `EngineConfig` lets a deployment choose.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Engine {
    /// Task attempts in flight across all runs.
    pub(crate) max_concurrency: usize,
    pub(crate) kill_grace: Duration,
    pub(crate) checkpoint_every: u64,
    pub(crate) max_inline_output: usize,
    /// Bytes a task may hand back as its output before it fails.
    pub(crate) max_output: u64,
    /// How long a process's hold on the runs it drives lasts unless
    /// renewed: after a crash, how long until another may take them over.
    pub(crate) lease: Duration,
    /// Where `workflow: name@version` tasks look before the registry.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) workflow_dirs: Vec<std::path::PathBuf>,
    /// Where `uses: name@version` tasks find their templates.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub(crate) template_dirs: Vec<std::path::PathBuf>,
    /// Let `http` tasks and agents reach link-local and cloud metadata
    /// addresses (169.254.169.254 and the like), refused by default.
    pub(crate) allow_link_local: bool,
}

impl Default for Engine {
    fn default() -> Engine {
        let defaults = EngineConfig::default();
        Engine {
            max_concurrency: defaults.max_concurrency,
            kill_grace: defaults.kill_grace,
            checkpoint_every: defaults.checkpoint_every,
            max_inline_output: defaults.max_inline_output,
            max_output: defaults.max_output,
            lease: defaults.lease,
            workflow_dirs: defaults.workflow_dirs,
            template_dirs: defaults.template_dirs,
            allow_link_local: defaults.allow_link_local,
        }
    }
}

impl Config {
    /// The engine's configuration as these settings say.
    pub(crate) fn engine_config(&self) -> EngineConfig {
        let mut config = EngineConfig::default();
        self.engine.apply(&mut config);
        config.agents.clone_from(&self.agents);
        config.breaker = self.breaker;
        config.workers.clone_from(&self.workers);
        config
    }
}

impl Engine {
    fn apply(&self, config: &mut EngineConfig) {
        config.max_concurrency = self.max_concurrency;
        config.kill_grace = self.kill_grace;
        config.checkpoint_every = self.checkpoint_every;
        config.max_inline_output = self.max_inline_output;
        config.max_output = self.max_output;
        config.lease = self.lease;
        config.workflow_dirs.clone_from(&self.workflow_dirs);
        config.template_dirs.clone_from(&self.template_dirs);
        config.allow_link_local = self.allow_link_local;
    }
}

/// `[store]`: where runs are recorded.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct StoreSettings {
    /// A SQLite file, or `postgres://USER:PASSWORD@HOST:PORT/DB` for a
    /// database server replicas share; `--store` beats it. Unset: the
    /// SQLite file `baton.db` in the state directory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) url: Option<String>,
    /// Connections to PostgreSQL a process keeps at most.
    pub(crate) connections: usize,
}

impl Default for StoreSettings {
    fn default() -> StoreSettings {
        StoreSettings {
            url: None,
            connections: baton_store::PostgresOptions::default().connections,
        }
    }
}

/// `[events]`: Redis Streams to publish every event to.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Events {
    /// `redis://HOST:PORT`: publish to Redis Streams when set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) redis: Option<String>,
    /// The streams' names start with it (`PREFIX:events`, `PREFIX:run:RUN`).
    pub(crate) prefix: String,
    /// Entries a stream keeps, about.
    pub(crate) max_len: usize,
}

impl Default for Events {
    fn default() -> Events {
        Events {
            redis: None,
            prefix: "baton".to_owned(),
            max_len: 1_000_000,
        }
    }
}

impl Events {
    /// The publisher's settings, if Redis is named.
    pub(crate) fn redis(&self) -> Option<baton_server::RedisEvents> {
        self.redis.as_ref().map(|url| baton_server::RedisEvents {
            url: url.clone(),
            prefix: self.prefix.clone(),
            max_len: self.max_len,
        })
    }
}

/// What `baton serve` deletes on its own, as `baton gc --older-than` would.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct Retention {
    /// Delete finished runs older than this; keep everything when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) older_than: Option<Duration>,
    /// How often to look.
    pub(crate) every: Duration,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            older_than: None,
            every: Duration::from_secs(3600),
        }
    }
}

/// The sections environment variables may set; other `BATON_` variables
/// (`BATON_HOME`, what tasks are given) are not settings of this file.
const SECTIONS: [&str; 7] = [
    "store",
    "server",
    "engine",
    "retention",
    "breaker",
    "workers",
    "events",
];

impl ConfigArgs {
    pub(crate) fn load(&self) -> anyhow::Result<Config> {
        let path = self
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from("baton.toml"));
        if self.path.is_some() && !path.exists() {
            anyhow::bail!("no settings file {}", path.display());
        }
        let mut settings = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .parse::<toml::Table>()
                .with_context(|| format!("bad settings in {}", path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => toml::Table::new(),
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", path.display()));
            }
        };
        overlay(&mut settings, std::env::vars());
        Config::deserialize(toml::Value::Table(settings))
            .with_context(|| format!("bad settings (from {} or BATON_ variables)", path.display()))
    }
}

/// Sets `BATON_SECTION__KEY=VALUE` variables of the known sections over
/// `settings`; a value that is not TOML (`127.0.0.1:9999`) is a string.
fn overlay(settings: &mut toml::Table, variables: impl Iterator<Item = (String, String)>) {
    for (name, text) in variables {
        let Some((section, key)) = name
            .strip_prefix("BATON_")
            .and_then(|rest| rest.split_once("__"))
        else {
            continue;
        };
        let section = section.to_ascii_lowercase();
        if !SECTIONS.contains(&section.as_str()) {
            continue;
        }
        let value = format!("value = {text}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut parsed| parsed.remove("value"))
            .unwrap_or(toml::Value::String(text));
        if let toml::Value::Table(table) = settings
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            table.insert(key.to_ascii_lowercase(), value);
        }
    }
}

/// `baton config`: the settings in effect, as TOML, secrets masked.
pub(crate) fn show(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    let config = args.load()?;
    let mut value = toml::Value::try_from(&config)?;
    mask(&mut value);
    crate::out::emit(toml::to_string_pretty(&value)?.trim_end());
    Ok(ExitCode::SUCCESS)
}

/// Hides what could be a secret: values under a key that names one, and
/// the password in a URL (`postgres://user:secret@host`).
fn mask(value: &mut toml::Value) {
    let Some(table) = value.as_table_mut() else {
        return;
    };
    for (key, value) in table.iter_mut() {
        let secret = ["password", "secret", "token", "key"]
            .iter()
            .any(|word| key.to_ascii_lowercase().contains(word));
        match value {
            toml::Value::Table(_) => mask(value),
            toml::Value::String(text) if secret => *text = "********".to_owned(),
            toml::Value::String(text) => {
                if let Some((scheme, rest)) = text.split_once("://")
                    && let Some((user, host)) = rest.split_once('@')
                    && let Some((name, _)) = user.split_once(':')
                {
                    *text = format!("{scheme}://{name}:********@{host}");
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_masked_and_the_rest_shown() {
        let mut value: toml::Value = toml::from_str(
            "[store]\nurl = \"postgres://baton:hunter2@db:5432/baton\"\napi_token = \"abc\"\nplain = \"x\"\n",
        )
        .unwrap();
        mask(&mut value);
        let shown = toml::to_string(&value).unwrap();
        assert!(
            shown.contains("postgres://baton:********@db:5432/baton"),
            "{shown}"
        );
        assert!(shown.contains("api_token = \"********\""), "{shown}");
        assert!(shown.contains("plain = \"x\""), "{shown}");
        assert!(!shown.contains("hunter2") && !shown.contains("abc"));
    }
}

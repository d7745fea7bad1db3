//! What an engine and a run are configured with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use baton_core::run::{Millis, RunSetup};
use baton_core::spec::FailurePolicy;
use baton_core::{Duration, Workflow};
use baton_store::{ParentTask, Reuse, RunRecord};
use serde_json::Value;

/// How an engine runs tasks; [`EngineConfig::default`] suits a laptop.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Where run files (logs, outputs) go.
    pub state_dir: PathBuf,
    /// Where processes start; a task's `cwd` is relative to it.
    pub workdir: PathBuf,
    /// Task attempts in flight across every run of this engine.
    pub max_concurrency: usize,
    /// Between SIGTERM and SIGKILL when a task is killed without a timeout
    /// of its own to say.
    pub kill_grace: Duration,
    /// Start the clock here instead of at the system time (tests, replays).
    pub start_time: Option<Millis>,
    /// Commands `decide` hands out per round.
    pub batch: usize,
    /// A snapshot of a run's state is stored every this many events (or
    /// every twice as many events as the run has tasks, if more), so a
    /// resume replays at most that many.
    pub checkpoint_every: u64,
    /// Events a watched run's handle holds before the run waits for its
    /// reader ([`crate::RunHandle::events`]).
    pub event_buffer: usize,
    /// Bytes of JSON above which a task's output is stored as an artifact
    /// and replaced by a reference to it (`output_artifact`).
    pub max_inline_output: usize,
    /// Bytes a task may hand back as its output (`$BATON_OUTPUT`, an HTTP
    /// response body). Read with this cap, so a runaway task fails with a
    /// clear message instead of the process holding gigabytes.
    pub max_output: u64,
    /// Where `workflow: name@version` tasks look for their workflow before
    /// the store's registry (see [`crate::workflow_dirs`]).
    pub workflow_dirs: Vec<PathBuf>,
    /// Where `uses: name@version` tasks find their template.
    pub template_dirs: Vec<PathBuf>,
    /// How long this engine's hold on the runs it drives lasts unless
    /// renewed (it renews every third of it): after a crash, how long
    /// until another process may take them over. On this machine a dead
    /// owner's runs are taken at once.
    pub lease: Duration,
    /// Agent capabilities this engine serves itself, each through an
    /// OpenAI-compatible chat endpoint, by capability.
    pub agents: BTreeMap<String, AgentProvider>,
    /// When the breaker of a remote host opens (`http` tasks, agent
    /// endpoints), and for how long.
    pub breaker: crate::BreakerSettings,
    /// How remote workers are leased work and judged.
    pub workers: crate::WorkerSettings,
    /// Let `http` tasks and agents reach link-local and cloud metadata
    /// addresses (refused by default: see `net_guard`).
    pub allow_link_local: bool,
    /// Where spans of runs and attempts go, if anywhere.
    pub spans: Option<std::sync::Arc<dyn crate::SpanSink>>,
}

/// An OpenAI-compatible chat-completions endpoint serving an agent
/// capability: a hosted API, vLLM, Ollama, llama.cpp's server.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentProvider {
    /// Where `/chat/completions` is, e.g. `http://127.0.0.1:11434/v1`.
    pub base_url: String,
    pub model: String,
    /// The environment variable that holds the API key, if it needs one:
    /// the key itself is never written in settings.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// What a million prompt and completion tokens cost, for the run's
    /// usage totals.
    #[serde(default)]
    pub prompt_cost_per_million: f64,
    #[serde(default)]
    pub completion_cost_per_million: f64,
    /// Calls to it at once, across every run of this process; unbounded
    /// when unset. A call waits for its turn within its task's timeout.
    #[serde(default)]
    pub concurrency: Option<u32>,
    /// Calls per second at most, spaced evenly (1 / rate apart); unbounded
    /// when unset.
    #[serde(default)]
    pub rate_per_second: Option<f64>,
    /// A URL answering 2xx while the endpoint is up, asked every few
    /// seconds by `baton serve`; while it does not, the endpoint shows as
    /// unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_url: Option<String>,
}

impl Default for EngineConfig {
    fn default() -> EngineConfig {
        EngineConfig {
            state_dir: PathBuf::from(".baton"),
            workdir: PathBuf::from("."),
            max_concurrency: 1024,
            kill_grace: Duration::from_secs(10),
            start_time: None,
            batch: 4096,
            checkpoint_every: 100_000,
            event_buffer: 4096,
            max_inline_output: 1024 * 1024,
            max_output: 64 * 1024 * 1024,
            workflow_dirs: Vec::new(),
            template_dirs: Vec::new(),
            lease: Duration::from_secs(4),
            agents: BTreeMap::new(),
            breaker: crate::BreakerSettings::default(),
            workers: crate::WorkerSettings::default(),
            allow_link_local: false,
            spans: None,
        }
    }
}
/// Per-run choices.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Input values; text is read as the declared type (`-i n=3`).
    pub inputs: BTreeMap<String, Value>,
    /// Overrides the workflow's `concurrency`.
    pub concurrency: Option<u32>,
    /// Overrides the workflow's `timeout`.
    pub timeout: Option<Duration>,
    /// Overrides the workflow's `on_failure`.
    pub on_failure: Option<FailurePolicy>,
    /// A run id to use instead of a fresh UUIDv7.
    pub run_id: Option<String>,
    /// Stream events through [`crate::RunHandle::events`].
    pub watch: bool,
    /// Take these tasks' results from an earlier run instead of running
    /// them (`baton rerun`).
    pub reuse: Option<Reuse>,
    /// Started through the API (`baton serve` resumes such runs when it
    /// starts again after dying).
    pub served: bool,
    /// The registered version of the workflow the run was started from.
    pub workflow_version: Option<u32>,
    /// For a sub-workflow's run: the task attempt it belongs to.
    pub parent: Option<ParentTask>,
    /// Workflows already found for `workflow: name@version` tasks; the
    /// others are looked up when the run starts.
    pub subworkflows: BTreeMap<String, Arc<Workflow>>,
    /// Labels the run's tasks for remote workers require (a task's own
    /// value for a label wins): where the run chooses to run.
    pub labels: BTreeMap<String, String>,
}
/// How the state of a recorded run is set up: its record, read back.
pub(crate) fn setup_of(record: &RunRecord) -> RunSetup {
    RunSetup {
        run_id: record.run_id.clone(),
        inputs: record.inputs.clone(),
        concurrency: record.concurrency,
        timeout: record.timeout,
        on_failure: record.on_failure,
        labels: record.labels.clone(),
    }
}

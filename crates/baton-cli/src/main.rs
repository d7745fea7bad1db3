//! `baton`: the command-line front of the orchestrator. Thin by design:
//! it parses arguments, reads files and prints; every decision is made in
//! the library crates.

/// mimalloc: big specs and runs allocate many small strings and vectors,
/// which glibc's allocator serves at about half the speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod agents;
mod audit;
mod config;
mod control;
mod gc;
mod home;
mod keys;
mod logs;
mod migrate;
mod out;
mod remote;
mod report;
mod run;
mod runs;
mod schedules;
mod serve;
mod signals;
mod spec_file;
mod submit;
mod watch;
mod worker;
mod workflows;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use crate::spec_file::SpecFile;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "A durable DAG orchestrator for agents and jobs"
)]
struct Cli {
    /// Ask this `baton serve` instead of the local store (`run`, `runs`,
    /// `show`, `logs`, `cancel`, `approve`, `pause`, `unpause`, `agents`,
    /// `workflows`, `schedules`, `backfill`), work for it (`worker`) or ask whether it is
    /// ready (`health`).
    #[arg(long, global = true, env = "BATON_SERVER", value_name = "URL")]
    server: Option<String>,
    /// The API key for `--server`.
    #[arg(long, global = true, env = "BATON_KEY", hide_env_values = true)]
    key: Option<String>,
    /// How `baton serve` and `baton worker` write their logs to stderr:
    /// `text`, or `json` (one object per line, with time and level).
    #[arg(
        long,
        global = true,
        env = "BATON_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check workflow specs and report every problem with its line:col.
    Validate {
        /// Spec files (YAML or JSON), directories of specs, or `-` for stdin.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check run inputs: `-i branch=main`.
        #[arg(short, long = "input", value_name = "KEY=VALUE", value_parser = parse_input)]
        inputs: Vec<(String, String)>,
        /// Print the problems as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the order tasks run in: levels, critical path, width.
    Plan {
        file: PathBuf,
        /// Print the plan as JSON (order, levels, critical path, width).
        #[arg(long)]
        json: bool,
    },
    /// Run a workflow: live progress, a summary, exit 0 only on success.
    Run(run::RunArgs),
    /// List recorded runs, newest first.
    Runs(runs::RunsArgs),
    /// A recorded run's tasks, states, attempts, durations and outputs.
    Show(runs::RunArgs),
    /// Finish a run whose `baton` died: what succeeded stays done, what was
    /// in flight runs again.
    Resume(runs::ResumeArgs),
    /// A new run of a recorded run's workflow and inputs that reuses what
    /// succeeded there; `--from TASK` runs that task and its dependants again.
    Rerun(runs::RerunArgs),
    /// The stdout and stderr of a recorded run's tasks.
    Logs(logs::LogsArgs),
    /// A recorded run's events, as JSON lines.
    Events(runs::EventsArgs),
    /// Ask the baton driving a run (in any process) to cancel it.
    Cancel(control::RunControlArgs),
    /// Decide a waiting `approval` task: `baton approve RUN TASK CHOICE`.
    Approve(control::ApproveArgs),
    /// Start no new task in a run until `baton unpause`; running ones finish.
    Pause(control::RunControlArgs),
    /// Let a paused run start tasks again.
    Unpause(control::RunControlArgs),
    /// What serves agent capabilities, how each fares, and its breaker.
    Agents(agents::AgentsArgs),
    /// Recompute a run's provenance from its events; names the first record
    /// that does not match.
    Verify(runs::RunArgs),
    /// A run's provenance records and root digest.
    Provenance(runs::RunArgs),
    /// Re-drive a run's decisions from its recorded results, without running
    /// anything, and print its trace digest.
    Replay(runs::RunArgs),
    /// A run's state snapshots, with their SHA-256 and whether they are sound.
    Checkpoints(runs::RunArgs),
    /// The files a run's tasks stored and consumed, by content hash.
    Artifacts(runs::RunArgs),
    /// Delete finished runs older than an age, with their logs and the
    /// artifacts no remaining run refers to.
    Gc(gc::GcArgs),
    /// Copy every run (events, read models, checkpoints), workflow and API
    /// key from one store to another, e.g. `--from .baton/baton.db --to
    /// postgres://...`, then verify each copied run's provenance.
    Migrate(migrate::MigrateArgs),
    /// Serve the REST API and live event streams (`/api/v1`).
    Serve(serve::ServeArgs),
    /// The registry of named, versioned workflows: register, list,
    /// versions, diff.
    Workflows {
        #[command(subcommand)]
        command: workflows::Command,
    },
    /// Registered workflows' schedules: the next fire times and what the
    /// last tick became.
    Schedules(schedules::SchedulesArgs),
    /// Start one run per tick of a workflow's schedule over past days:
    /// `baton backfill nightly --from 2026-11-01 --to 2026-11-30`.
    Backfill(schedules::BackfillArgs),
    /// Whether a server is ready (`/readyz`): exit 0 when it is, 1 when it
    /// is not or cannot be reached; what container health checks run.
    Health,
    /// Run tasks routed to a capability, for a server (`--server URL
    /// --key KEY`): `run`/`command` tasks with `runs_on`, and agent tasks
    /// through COMMAND.
    Worker(worker::WorkerArgs),
    /// The settings in effect (baton.toml, BATON_ variables), secrets masked.
    Config(config::ConfigArgs),
    /// The API keys `baton serve` accepts.
    Keys {
        #[command(subcommand)]
        command: keys::Command,
    },
    /// Print the DAG as Mermaid or Graphviz DOT.
    Graph {
        file: PathBuf,
        #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
        format: GraphFormat,
    },
    /// Print the JSON Schema of workflow specs.
    Schema,
    /// Benchmarks that print their figures.
    Bench {
        #[command(subcommand)]
        command: baton_bench::Command,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where the long-running commands' logs go: stderr, as plain lines (what
/// a terminal shows) or JSON lines (what a log pipeline reads).
fn install_logs(format: LogFormat) {
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_target(false);
    let installed = match format {
        LogFormat::Text => logs.without_time().with_level(false).try_init(),
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init(),
    };
    // Only a second install fails, and the first one stands.
    drop(installed);
}

#[derive(Clone, Copy, ValueEnum)]
enum GraphFormat {
    Mermaid,
    Dot,
}

pub(crate) fn parse_input(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{text}`"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    install_logs(cli.log_format);
    let remote = match cli
        .server
        .as_deref()
        .map(|server| remote::Remote::new(server, cli.key.clone()))
    {
        Some(Ok(remote)) => Some(remote),
        Some(Err(error)) => {
            eprintln!("error: {error:#}");
            return ExitCode::from(2);
        }
        None => None,
    };
    let remote = remote.as_ref();
    let served = matches!(
        cli.command,
        Command::Run(_)
            | Command::Runs(_)
            | Command::Show(_)
            | Command::Logs(_)
            | Command::Cancel(_)
            | Command::Approve(_)
            | Command::Pause(_)
            | Command::Unpause(_)
            | Command::Agents(_)
            | Command::Schedules(_)
            | Command::Backfill(_)
            | Command::Workflows { .. }
    );
    if remote.is_some()
        && !served
        && !matches!(
            cli.command,
            Command::Serve(_) | Command::Worker(_) | Command::Health
        )
    {
        eprintln!(
            "error: --server applies to run, runs, show, logs, cancel, approve, pause, unpause, agents, workflows, schedules, backfill, worker and health; this command works on the local store"
        );
        return ExitCode::from(2);
    }
    let outcome = runtime().and_then(|runtime| runtime.block_on(dispatch(cli.command, remote)));
    outcome.unwrap_or_else(|error| {
        eprintln!("error: {error:#}");
        ExitCode::from(2)
    })
}

/// Carries out one command.
async fn dispatch(command: Command, remote: Option<&remote::Remote>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate {
            files,
            inputs,
            json,
        } => validate(&files, &inputs, json),
        Command::Plan { file, json } => plan(&file, json),
        Command::Graph { file, format } => graph(&file, format),
        Command::Run(args) => run::run(args, remote).await,
        Command::Runs(args) => runs::runs(args, remote).await,
        Command::Agents(args) => agents::agents(args, remote).await,
        Command::Show(args) => runs::show(args, remote).await,
        Command::Events(args) => runs::events(args).await,
        Command::Resume(args) => runs::resume(args).await,
        Command::Rerun(args) => runs::rerun(args).await,
        Command::Logs(args) => logs::logs(args, remote).await,
        Command::Cancel(args) => control::cancel(args, remote).await,
        Command::Approve(args) => control::approve(args, remote).await,
        Command::Pause(args) => control::pause(args, remote).await,
        Command::Unpause(args) => control::unpause(args, remote).await,
        Command::Verify(args) => audit::verify(args).await,
        Command::Provenance(args) => audit::provenance(args).await,
        Command::Replay(args) => audit::replay(args).await,
        Command::Checkpoints(args) => audit::checkpoints(args).await,
        Command::Artifacts(args) => audit::artifacts(args).await,
        Command::Gc(args) => gc::gc(args).await,
        Command::Migrate(args) => migrate::migrate(args).await,
        Command::Serve(args) => serve::serve(args).await,
        Command::Health => serve::health(remote).await,
        Command::Schedules(args) => schedules::schedules(args, remote).await,
        Command::Workflows { command } => workflows::run(command, remote).await,
        Command::Backfill(args) => schedules::backfill(args, remote).await,
        Command::Worker(args) => worker::worker(args, remote).await,
        Command::Keys { command } => keys::run(command).await,
        Command::Config(args) => config::show(args),
        Command::Schema => {
            out::json(&baton_core::Workflow::json_schema()).map(|()| ExitCode::SUCCESS)
        }
        Command::Bench { command } => baton_bench::run(command).await.map(|()| ExitCode::SUCCESS),
    }
}

/// What expanding the spec's `uses` tasks with the templates beside it
/// finds wrong: templates are checked when a spec is, not first at run time.
fn template_problems(
    file: &spec_file::SpecFile,
    workflow: &baton_core::Workflow,
) -> Vec<baton_core::Problem> {
    if !baton_engine::has_uses(workflow) {
        return Vec::new();
    }
    let dir = std::path::Path::new(&file.name)
        .parent()
        .unwrap_or_else(|| std::path::Path::new("."));
    baton_engine::expand_templates(workflow, &baton_engine::template_dirs(dir))
        .err()
        .unwrap_or_default()
}

fn validate(
    paths: &[PathBuf],
    inputs: &[(String, String)],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let files = match spec_file::expand(paths) {
        Ok(files) => files,
        // Nothing to validate is a failed validation, not a misuse.
        Err(error) if error.is::<spec_file::NoSpecs>() => {
            eprintln!("error: {error}");
            return Ok(ExitCode::FAILURE);
        }
        Err(error) => return Err(error),
    };
    let mut results = Vec::with_capacity(files.len());
    for file in &files {
        let mut problems = match file.check() {
            Ok(valid) => {
                let mut problems = template_problems(file, valid.workflow());
                if !inputs.is_empty() {
                    let given = inputs
                        .iter()
                        .map(|(key, value)| (key.clone(), serde_json::Value::from(value.as_str())))
                        .collect();
                    problems.extend(
                        baton_core::resolve_inputs(valid.workflow(), &given)
                            .err()
                            .unwrap_or_default(),
                    );
                }
                problems
            }
            Err(problems) => problems,
        };
        baton_core::SourceMap::locate_all(&file.text, &mut problems);
        results.push((file, problems));
    }
    let failed = results.iter().any(|(_, problems)| !problems.is_empty());
    if json {
        let documents: Vec<_> = results
            .iter()
            .map(|(file, problems)| serde_json::json!({"file": file.name, "valid": problems.is_empty(), "problems": problems}))
            .collect();
        out::json(&serde_json::Value::Array(documents))?;
    } else {
        for (file, problems) in &results {
            report::print(file, problems);
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn plan(path: &std::path::Path, json: bool) -> anyhow::Result<ExitCode> {
    let Some(valid) = checked(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    let plan = valid.plan();
    let summary = plan.report(valid.workflow());
    if json {
        out::json(&summary)?;
    } else {
        report::print_plan(&summary, valid.dag().edge_count());
    }
    Ok(ExitCode::SUCCESS)
}

fn graph(path: &std::path::Path, format: GraphFormat) -> anyhow::Result<ExitCode> {
    let Some(valid) = checked(path)? else {
        return Ok(ExitCode::FAILURE);
    };
    let text = match format {
        GraphFormat::Mermaid => baton_core::render::mermaid(valid.workflow(), valid.dag()),
        GraphFormat::Dot => baton_core::render::dot(valid.workflow(), valid.dag()),
    };
    out::write(format_args!("{text}"));
    Ok(ExitCode::SUCCESS)
}

/// The checked workflow of a spec file, or `None` after printing its problems.
pub(crate) fn checked(path: &std::path::Path) -> anyhow::Result<Option<baton_core::Valid>> {
    let file = SpecFile::read(path)?;
    match file.check() {
        Ok(valid) => Ok(Some(valid)),
        Err(problems) => {
            report::print(&file, &problems);
            Ok(None)
        }
    }
}

/// The async runtime for commands that run or watch runs.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    use anyhow::Context;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

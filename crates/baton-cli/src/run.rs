//! `baton run`: a workflow from a file, stdin or `--tasks`, checked,
//! started with the options given, and watched to its end.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use baton_core::spec::FailurePolicy;
use baton_core::{Duration, Format, Valid};
use baton_engine::{Error, RunOptions};
use serde_json::Value;

use crate::home::Home;
use crate::report;
use crate::spec_file::SpecFile;
use crate::watch::follow;

#[derive(clap::Args)]
pub(crate) struct RunArgs {
    /// The spec (YAML or JSON), or `-` to read it from stdin.
    #[arg(required_unless_present = "tasks")]
    file: Option<PathBuf>,
    /// An inline list of tasks instead of a file:
    /// `--tasks '[{"id": "a", "run": "make"}, {"id": "b", "run": "make test", "needs": ["a"]}]'`.
    #[arg(long, conflicts_with = "file", value_name = "JSON")]
    tasks: Option<String>,
    /// A run input: `-i branch=main` (repeatable).
    #[arg(short, long = "input", value_name = "KEY=VALUE", value_parser = crate::parse_input)]
    inputs: Vec<(String, String)>,
    /// With --server: a label every task for remote workers requires
    /// unless it names the label itself (`--label region=eu`; repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::parse_input)]
    labels: Vec<(String, String)>,
    /// Tasks in flight at once (overrides the spec's `concurrency`).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    concurrency: Option<u32>,
    /// A time limit on the whole run: `--timeout 5m`.
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<Duration>,
    /// What a failed task does to the run (overrides the spec's `on_failure`).
    #[arg(long, value_enum)]
    on_failure: Option<OnFailure>,
    /// Stream events as JSON lines on stdout, then the report.
    #[arg(long)]
    json: bool,
    /// The run's id; if a run with this id is recorded, it is resumed (or,
    /// if it ended, reported) instead of started again.
    #[arg(long, value_name = "ID", value_parser = run_id)]
    run_id: Option<String>,
    /// Derive the run id from this seed and the workflow's name, for
    /// reproducible runs (see --run-id).
    #[arg(long, conflicts_with = "run_id")]
    seed: Option<u64>,
    #[command(flatten)]
    home: Home,
}

#[derive(Clone, Copy, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
enum OnFailure {
    FailFast,
    Continue,
    Compensate,
}

impl From<OnFailure> for FailurePolicy {
    fn from(policy: OnFailure) -> FailurePolicy {
        match policy {
            OnFailure::FailFast => FailurePolicy::FailFast,
            OnFailure::Continue => FailurePolicy::Continue,
            OnFailure::Compensate => FailurePolicy::Compensate,
        }
    }
}

pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    text.parse::<Duration>().map_err(|error| error.to_string())
}

pub(crate) async fn run(
    args: RunArgs,
    remote: Option<&crate::remote::Remote>,
) -> anyhow::Result<ExitCode> {
    let file = match (&args.file, &args.tasks) {
        (_, Some(tasks)) => inline(tasks)?,
        (Some(path), None) => SpecFile::read(path)?,
        (None, None) => anyhow::bail!("give a spec file, `-` for stdin, or --tasks"),
    };
    if remote.is_none() && !args.labels.is_empty() {
        anyhow::bail!("--label chooses remote workers, which only a server has: add --server URL");
    }
    if let Some(remote) = remote {
        if args.run_id.is_some() || args.seed.is_some() || args.on_failure.is_some() {
            anyhow::bail!(
                "--run-id, --seed and --on-failure apply to local runs; a server names its runs itself"
            );
        }
        return crate::submit::submit(
            remote,
            &file,
            &args.inputs,
            &args.labels,
            args.concurrency,
            args.timeout,
            args.json,
        )
        .await;
    }
    let valid = match file.check() {
        Ok(valid) => valid,
        Err(problems) => return Ok(refuse(&file, problems)),
    };
    execute(&file, valid, args).await
}

/// A spec from `--tasks`: a JSON list of tasks, each with its `id`.
fn inline(tasks: &str) -> anyhow::Result<SpecFile> {
    let list: Vec<serde_json::Map<String, Value>> =
        serde_json::from_str(tasks).context("--tasks takes a JSON list of task objects")?;
    let mut by_id = serde_json::Map::new();
    for (position, mut task) in list.into_iter().enumerate() {
        let id = match task.remove("id") {
            Some(Value::String(id)) => id,
            _ => anyhow::bail!("task {} of --tasks has no string `id`", position + 1),
        };
        by_id.insert(id, Value::Object(task));
    }
    let spec = serde_json::json!({ "name": "tasks", "tasks": by_id });
    Ok(SpecFile {
        name: "--tasks".to_owned(),
        text: Arc::new(serde_json::to_string_pretty(&spec)?),
        format: Format::Json,
    })
}

fn refuse(file: &SpecFile, mut problems: Vec<baton_core::Problem>) -> ExitCode {
    baton_core::SourceMap::locate_all(&file.text, &mut problems);
    report::print(file, &problems);
    ExitCode::FAILURE
}

async fn execute(file: &SpecFile, valid: Valid, args: RunArgs) -> anyhow::Result<ExitCode> {
    let valid = Arc::new(valid);
    // Sub-workflows named by reference are looked for beside the spec.
    let spec_dir = match &args.file {
        Some(path) if path != std::path::Path::new("-") => path
            .parent()
            .map_or_else(|| PathBuf::from("."), std::path::Path::to_path_buf),
        _ => PathBuf::from("."),
    };
    let settings = args.home.settings()?;
    let mut config = settings.engine_config();
    // Beside the spec first, then where the settings say.
    let configured = std::mem::take(&mut config.workflow_dirs);
    config.workflow_dirs = baton_engine::workflow_dirs(&spec_dir);
    config.workflow_dirs.extend(configured);
    let configured = std::mem::take(&mut config.template_dirs);
    config.template_dirs = baton_engine::template_dirs(&spec_dir);
    config.template_dirs.extend(configured);
    let templates = config.template_dirs.clone();
    let engine = args.home.engine_with(config, &settings.store).await?;
    let options = RunOptions {
        inputs: args
            .inputs
            .iter()
            .map(|(key, value)| (key.clone(), Value::from(value.as_str())))
            .collect::<BTreeMap<_, _>>(),
        concurrency: args.concurrency,
        timeout: args.timeout,
        on_failure: args.on_failure.map(FailurePolicy::from),
        run_id: args.run_id.or_else(|| {
            args.seed
                .map(|seed| baton_core::seeded_run_id(seed, &valid.workflow().name))
        }),
        watch: true,
        ..RunOptions::default()
    };
    let recorded = match &options.run_id {
        Some(run_id) => engine.store().run(run_id).await.ok(),
        None => None,
    };
    if let Some(record) = recorded {
        return again(&engine, &record, &valid, &templates, args.json).await;
    }
    let handle = match engine.start_valid(Arc::clone(&valid), options).await {
        Ok(handle) => handle,
        Err(Error::Invalid(problems)) => return Ok(refuse(file, problems)),
        // Another baton started the same id (the same --seed) a moment ago.
        Err(Error::Store(baton_store::Error::RunExists(run_id))) => {
            let record = engine.store().run(&run_id).await?;
            return again(&engine, &record, &valid, &templates, args.json).await;
        }
        Err(error) => return Err(error.into()),
    };
    follow(&engine, handle, args.json).await
}

/// A run id given again (`--run-id`, `--seed`): the recorded run is
/// resumed or reported, unless it was made from another workflow, which is
/// left as it is.
async fn again(
    engine: &baton_engine::Engine,
    record: &baton_store::RunRecord,
    valid: &Valid,
    templates: &[PathBuf],
    json: bool,
) -> anyhow::Result<ExitCode> {
    let current = if baton_engine::has_uses(valid.workflow()) {
        baton_engine::expand_templates(valid.workflow(), templates)
            .map(|expanded| expanded.into_workflow())
            .ok()
    } else {
        Some(valid.workflow().clone())
    };
    if current.as_ref() != Some(&*record.workflow) {
        eprintln!(
            "error: run {} exists and was made from a different version of this workflow; \
             it is left as it is. Give another --seed or --run-id for a new run \
             (`baton show {}` shows the recorded one)",
            record.run_id, record.run_id
        );
        return Ok(ExitCode::FAILURE);
    }
    match engine.resume(&record.run_id, true).await {
        Ok(handle) => follow(engine, handle, json).await,
        Err(error) => crate::home::refused(error),
    }
}

/// A `--run-id` that can name a run's files and URLs.
fn run_id(id: &str) -> Result<String, String> {
    match baton_core::run::run_id_problem(id) {
        Some(problem) => Err(problem),
        None => Ok(id.to_owned()),
    }
}

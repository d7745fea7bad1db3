//! `baton workflows`: the registry of named, versioned workflows (what
//! `baton serve` starts by name and on schedules): register, list, show
//! versions, and what changed between two. On the local store, or a
//! server's with `--server`.

use std::path::PathBuf;
use std::process::ExitCode;

use baton_core::Workflow;
use baton_core::diff::{FieldChange, WorkflowDiff};
use baton_server::api::{VersionList, WorkflowList, WorkflowShown};

use crate::home::Home;
use crate::remote::Remote;

#[derive(clap::Subcommand)]
pub(crate) enum Command {
    /// Register specs as new versions of their names (an unchanged spec
    /// stays the version it is).
    Register {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        home: Home,
    },
    /// The latest version of each registered workflow.
    List {
        #[command(flatten)]
        home: Home,
    },
    /// Every version of one workflow, oldest first.
    Versions {
        name: String,
        #[command(flatten)]
        home: Home,
    },
    /// What changed in the tasks and settings from one version to another:
    /// `baton workflows diff nightly 3 4`.
    Diff {
        name: String,
        from: u32,
        to: u32,
        /// Print the changes as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        home: Home,
    },
}

pub(crate) async fn run(command: Command, remote: Option<&Remote>) -> anyhow::Result<ExitCode> {
    match command {
        Command::Register { files, home } => register(&files, &home, remote).await,
        Command::List { home } => {
            let listed = match remote {
                Some(remote) => {
                    remote
                        .get::<WorkflowList>("/workflows", &[])
                        .await?
                        .workflows
                }
                None => home
                    .engine()
                    .await?
                    .store()
                    .workflows()
                    .await?
                    .iter()
                    .map(|stored| WorkflowShown::of(stored, false))
                    .collect(),
            };
            print_versions(&listed);
            Ok(ExitCode::SUCCESS)
        }
        Command::Versions { name, home } => {
            let versions = match remote {
                Some(remote) => {
                    let path = format!("/workflows/{name}/versions");
                    remote.get::<VersionList>(&path, &[]).await?.versions
                }
                None => home
                    .engine()
                    .await?
                    .store()
                    .workflow_versions(&name)
                    .await?
                    .iter()
                    .map(|stored| WorkflowShown::of(stored, false))
                    .collect(),
            };
            print_versions(&versions);
            Ok(ExitCode::SUCCESS)
        }
        Command::Diff {
            name,
            from,
            to,
            json,
            home,
        } => {
            let before = version(&name, from, &home, remote).await?;
            let after = version(&name, to, &home, remote).await?;
            let changes = baton_core::diff::diff(&before, &after);
            if json {
                crate::out::json(&changes)?;
            } else {
                print_diff(&name, from, to, &changes);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn register(
    files: &[PathBuf],
    home: &Home,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let mut valid = Vec::new();
    for file in crate::spec_file::expand(files)? {
        let Some(checked) = crate::checked(std::path::Path::new(&file.name))? else {
            return Ok(ExitCode::FAILURE);
        };
        valid.push(checked);
    }
    let store = match remote {
        Some(remote) => Registry::Server(remote),
        None => Registry::Local(home.engine().await?),
    };
    for valid in valid {
        let (new, shown) = match &store {
            Registry::Server(remote) => {
                let shown: WorkflowShown = match remote.post("/workflows", valid.workflow()).await?
                {
                    Ok(shown) => shown,
                    Err(refused) => anyhow::bail!("{refused}"),
                };
                // The answer's status (201 new, 200 unchanged) is not
                // kept: the version is what matters.
                (None, shown)
            }
            Registry::Local(engine) => {
                let (new, stored) = baton_server::register_workflow(
                    engine.store().as_ref(),
                    valid,
                    baton_engine::wall_clock(),
                )
                .await?;
                (Some(new), WorkflowShown::of(&stored, false))
            }
        };
        let what = match new {
            Some(true) => "registered",
            Some(false) => "unchanged:",
            None => "latest:",
        };
        crate::out::out!("{what} {}@{}", shown.name, shown.version);
    }
    Ok(ExitCode::SUCCESS)
}

/// Where workflows are registered.
enum Registry<'a> {
    Server(&'a Remote),
    Local(baton_engine::Engine),
}

/// Version `version` of workflow `name`.
async fn version(
    name: &str,
    version: u32,
    home: &Home,
    remote: Option<&Remote>,
) -> anyhow::Result<Workflow> {
    match remote {
        Some(remote) => {
            let path = format!("/workflows/{name}/versions/{version}");
            let shown: WorkflowShown = remote.get(&path, &[]).await?;
            let spec = shown.spec.ok_or_else(|| {
                anyhow::anyhow!("the server sent {name}@{version} without its spec")
            })?;
            Ok(serde_json::from_value(spec)?)
        }
        None => {
            let engine = home.engine().await?;
            let stored = engine.store().workflow(name, Some(version)).await?;
            Ok((*stored.workflow).clone())
        }
    }
}

fn print_versions(versions: &[WorkflowShown]) {
    if versions.is_empty() {
        crate::out::out!("no registered workflow: `baton workflows register FILE` registers one");
        return;
    }
    let mut table = comfy_table::Table::new();
    table.load_preset(comfy_table::presets::NOTHING);
    table.set_header(["workflow", "version", "tasks", "registered", "digest"]);
    let now = baton_engine::wall_clock().0;
    for shown in versions {
        table.add_row([
            shown.name.clone(),
            shown.version.to_string(),
            shown.tasks.to_string(),
            format!(
                "{} ago",
                crate::runs::age(now.saturating_sub(shown.created_at.0))
            ),
            shown.digest.chars().take(12).collect(),
        ]);
    }
    crate::out::out!("{table}");
}

fn print_diff(name: &str, from: u32, to: u32, changes: &WorkflowDiff) {
    crate::out::out!("{name} {from} -> {to}");
    if changes.is_empty() {
        crate::out::out!("  no change");
        return;
    }
    for field in &changes.settings {
        crate::out::out!("  ~ {}", change(field));
    }
    for task in &changes.added {
        crate::out::out!("  + task {task}");
    }
    for task in &changes.removed {
        crate::out::out!("  - task {task}");
    }
    for task in &changes.changed {
        crate::out::out!("  ~ task {}", task.task);
        for field in &task.fields {
            crate::out::out!("      {}", change(field));
        }
    }
}

fn change(field: &FieldChange) -> String {
    let show = |value: &Option<serde_json::Value>| {
        value
            .as_ref()
            .map_or_else(|| "(none)".to_owned(), serde_json::Value::to_string)
    };
    format!(
        "{}: {} -> {}",
        field.field,
        show(&field.before),
        show(&field.after)
    )
}

//! `baton worker`: runs the reference worker against a server until
//! SIGTERM or Ctrl-C, then drains and leaves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use baton_engine::remote::Workspace;
use baton_engine::remote::protocol::Registration;

#[derive(clap::Args)]
pub(crate) struct WorkerArgs {
    /// A capability it offers: the `capability` of `agent` tasks and of
    /// `runs_on`. Repeat for several.
    #[arg(long = "capability", required = true, value_name = "NAME")]
    capabilities: Vec<String>,
    /// A label tasks may require (`--label region=eu`). Repeat for several.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = crate::parse_input)]
    labels: Vec<(String, String)>,
    /// Attempts it runs at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10000))]
    concurrency: u32,
    /// Its name in `baton agents` (the host name by default).
    #[arg(long)]
    name: Option<String>,
    /// Where tasks start; a task's `cwd` is relative to it.
    #[arg(long, default_value = ".")]
    workdir: PathBuf,
    /// Where attempts' logs and outputs are kept until they are uploaded.
    #[arg(long, default_value = ".baton/worker")]
    state_dir: PathBuf,
    /// After SIGTERM, how long running attempts may take to finish before
    /// they are handed back to the server.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    drain_timeout: std::time::Duration,
    /// The program that answers agent tasks: it reads the task (prompt,
    /// input, upstream outputs, run and task ids) as JSON on stdin and
    /// writes its answer as JSON to `$BATON_OUTPUT` or stdout.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

pub(crate) async fn worker(
    args: WorkerArgs,
    remote: Option<&crate::remote::Remote>,
) -> anyhow::Result<ExitCode> {
    let Some(remote) = remote else {
        anyhow::bail!(
            "baton worker needs the server to work for: --server URL (and --key KEY with scope worker)"
        );
    };
    let name = args.name.unwrap_or_else(host_name);
    let config = baton_worker::WorkerConfig {
        server: remote.server().to_owned(),
        key: remote.key().map(str::to_owned),
        registration: Registration {
            name,
            capabilities: args.capabilities,
            labels: args.labels.into_iter().collect::<BTreeMap<_, _>>(),
            concurrency: args.concurrency,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        },
        workspace: Workspace {
            workdir: std::path::absolute(&args.workdir)?,
            state_dir: std::path::absolute(&args.state_dir)?,
            max_output: baton_engine::EngineConfig::default().max_output,
            agent_command: args.command,
        },
        drain_timeout: args.drain_timeout,
    };
    let mut stop = crate::signals::Stop::listen()?;
    let summary = baton_worker::run(config, async move { stop.next().await }).await?;
    tracing::info!(
        "baton worker: stopped after {} succeeded, {} failed, {} handed back",
        summary.succeeded,
        summary.failed,
        summary.stopped
    );
    Ok(ExitCode::SUCCESS)
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "worker".to_owned())
}

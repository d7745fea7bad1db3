//! Requests to a run that a `baton` in any process drives: `baton cancel`,
//! `baton approve`, `baton pause`, `baton unpause`. Each is checked against
//! the run's record (a wrong task or choice is refused here), then left in
//! the store, where the driving process reads it within its poll interval.

use std::process::ExitCode;

use baton_core::run::{Control, ControlError, Decision};
use baton_server::api::{Accepted, DecisionRequest};

use crate::home::Home;
use crate::remote::Remote;

#[derive(clap::Args)]
pub(crate) struct RunControlArgs {
    /// The run's id.
    run: String,
    #[command(flatten)]
    home: Home,
}

#[derive(clap::Args)]
pub(crate) struct ApproveArgs {
    /// The run's id.
    run: String,
    /// The waiting `approval` task.
    task: String,
    /// One of the task's `choices`.
    choice: String,
    /// Why; kept with the decision.
    #[arg(long)]
    comment: Option<String>,
    /// Who decides (default: $USER).
    #[arg(long, env = "USER")]
    by: Option<String>,
    #[command(flatten)]
    home: Home,
}

pub(crate) async fn cancel(
    args: RunControlArgs,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let done = format!(
        "cancel requested for run {}; the baton running it stops its tasks now",
        args.run
    );
    send(&args.home, remote, &args.run, Control::Cancel, &done).await
}

pub(crate) async fn pause(
    args: RunControlArgs,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let done = format!(
        "pause requested for run {}; running tasks finish, no new one starts",
        args.run
    );
    send(&args.home, remote, &args.run, Control::Pause, &done).await
}

pub(crate) async fn unpause(
    args: RunControlArgs,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let done = format!("run {} starts tasks again", args.run);
    send(&args.home, remote, &args.run, Control::Resume, &done).await
}

pub(crate) async fn approve(
    args: ApproveArgs,
    remote: Option<&Remote>,
) -> anyhow::Result<ExitCode> {
    let done = format!(
        "{} chosen for task {} of run {}",
        args.choice, args.task, args.run
    );
    let control = Control::Decide(Decision {
        task: args.task,
        choice: args.choice,
        by: args.by,
        key_id: None,
        note: None,
        comment: args.comment,
    });
    send(&args.home, remote, &args.run, control, &done).await
}

async fn send(
    home: &Home,
    remote: Option<&Remote>,
    run: &str,
    control: Control,
    done: &str,
) -> anyhow::Result<ExitCode> {
    match remote {
        Some(remote) => ask(remote, run, control, done).await,
        None => request(home, run, control, done).await,
    }
}

/// [`request`] through a server: the same checks, made there.
async fn ask(remote: &Remote, run: &str, control: Control, done: &str) -> anyhow::Result<ExitCode> {
    let (path, body) = match &control {
        Control::Cancel => (format!("/runs/{run}/cancel"), None),
        Control::Pause => (format!("/runs/{run}/pause"), None),
        Control::Resume => (format!("/runs/{run}/resume"), None),
        Control::Decide(decision) => (
            format!("/runs/{run}/tasks/{}/decision", decision.task),
            Some(DecisionRequest {
                choice: decision.choice.clone(),
                by: decision.by.clone(),
                comment: decision.comment.clone(),
            }),
        ),
    };
    let sent = match body {
        Some(decision) => remote.post::<Accepted>(&path, &decision).await?,
        None => {
            remote
                .post::<Accepted>(&path, &serde_json::Map::new())
                .await?
        }
    };
    match sent {
        Ok(_) => {
            crate::out::emit(done);
            Ok(ExitCode::SUCCESS)
        }
        Err(refused) if refused.status == 404 => Err(refused.into()),
        Err(refused) if refused.status == 409 => {
            let shown: baton_engine::RunReport = remote.get(&format!("/runs/{run}"), &[]).await?;
            if shown.status.is_final() {
                crate::out::emit(format_args!("run {run} already ended: {}", shown.status));
            } else {
                eprintln!("error: {refused}");
            }
            Ok(ExitCode::FAILURE)
        }
        Err(refused) if refused.status < 500 && refused.status != 401 && refused.status != 403 => {
            eprintln!("error: {refused}");
            Ok(ExitCode::FAILURE)
        }
        Err(refused) => Err(refused.into()),
    }
}

/// Leaves `control` for the run; a request the run cannot take now (it
/// ended, the approval was decided) exits 1 with why.
async fn request(home: &Home, run: &str, control: Control, done: &str) -> anyhow::Result<ExitCode> {
    let engine = home.engine().await?;
    let answer = engine.control(run, control).await;
    match answer {
        Ok(()) => {
            let summary = engine
                .store()
                .summary(run)
                .await?
                .judged(baton_engine::wall_clock());
            if summary.driven == Some(baton_store::Driven::Orphaned) {
                // Nothing acts on it until someone drives the run again.
                crate::out::emit(format_args!(
                    "request recorded for run {run}, but no process drives it (the one that \
                     did is gone): `baton resume {run}` takes it up and applies it"
                ));
            } else {
                crate::out::emit(done);
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(baton_engine::Error::Control(ControlError::Finished)) => {
            let status = engine.store().summary(run).await?.status;
            crate::out::emit(format_args!("run {run} already ended: {status}"));
            Ok(ExitCode::FAILURE)
        }
        Err(baton_engine::Error::Control(refused)) => {
            eprintln!("error: {refused}");
            Ok(ExitCode::FAILURE)
        }
        Err(baton_engine::Error::Store(baton_store::Error::UnknownRun(_))) => {
            anyhow::bail!("no run `{run}`")
        }
        Err(error) => Err(error.into()),
    }
}

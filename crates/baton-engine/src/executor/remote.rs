//! Attempts routed to a capability (an `agent` task no configured endpoint
//! serves, a task with `runs_on`): handed to the dispatcher, which leases
//! them to a remote worker and answers with how they ended.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use baton_core::run::{Artifact, Digest, Failure, FailureKind, Work};
use tokio::sync::oneshot;

use super::job::{Attempt, Carried, Executor, Kill, Outcome, timed_out};
use crate::remote::protocol::{Lease, LeasedFile, LeasedWork};
use crate::remote::{Dispatcher, Ended, Item, Ticket};

/// Slack past an attempt's timeout and grace before the server stops
/// waiting for its worker's report: the worker times the attempt out
/// itself and should report well within it.
const REPORT_SLACK: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub(crate) struct Remote {
    pub(crate) dispatcher: Arc<Dispatcher>,
}

#[async_trait]
impl Executor for Remote {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let Some(route) = attempt.resolved.route.clone() else {
            return Outcome::Failed(Failure::new(
                FailureKind::Error,
                "the attempt names no capability to route it by",
            ));
        };
        let work = match &attempt.resolved.work {
            Work::Shell(shell) => LeasedWork::Shell {
                script: shell.script.clone(),
                values: shell.values.iter().cloned().collect(),
            },
            Work::Command(argv) => LeasedWork::Command { argv: argv.clone() },
            Work::Noop => LeasedWork::Noop,
            Work::Agent(call) => LeasedWork::Agent {
                prompt: call.prompt.clone(),
                input: call.input.clone(),
                schema: call.schema.clone(),
            },
            other => {
                return Outcome::Failed(Failure::new(
                    FailureKind::Error,
                    format!("{other:?} does not run on a worker"),
                ));
            }
        };
        let context = &attempt.context;
        let lease = Lease {
            lease_id: String::new(),
            fencing: 0,
            expires_in_ms: 0,
            run_id: context.run_id.clone(),
            task_id: context.task_id.clone(),
            attempt: context.attempt,
            idempotency_key: context.idempotency_key.clone(),
            capability: route.capability.clone(),
            work,
            env: attempt.resolved.env.iter().cloned().collect(),
            cwd: attempt.resolved.cwd.clone(),
            timeout_ms: None,
            grace_ms: attempt.grace.as_std().as_millis() as u64,
            inputs: context.inputs.clone(),
            needs: context.needs.clone(),
            files: attempt
                .carried
                .iter()
                .flat_map(|carried| &carried.needs)
                .map(|artifact| LeasedFile {
                    path: artifact.path.clone(),
                    sha256: artifact.digest.to_string(),
                    size: artifact.size,
                })
                .collect(),
            artifacts: attempt
                .carried
                .as_ref()
                .map(|carried| carried.declared.clone())
                .unwrap_or_default(),
        };
        let (reply, answer) = oneshot::channel();
        let timeout = attempt.timeout.map(|timeout| timeout.as_std());
        let ticket = self
            .dispatcher
            .submit(Item {
                route,
                lease,
                prefix: attempt.prefix.clone(),
                queued: Instant::now(),
                timeout,
                reply,
            })
            .await;
        let mut held = Withdraw {
            dispatcher: Arc::clone(&self.dispatcher),
            ticket: Some(ticket),
        };
        // Queued past its timeout, the attempt times out here; leased, its
        // worker times it out and is given its grace and some slack to say so.
        let dispatcher = &self.dispatcher;
        let limit = async {
            let Some(after) = timeout else {
                return std::future::pending().await;
            };
            tokio::time::sleep(after).await;
            if !dispatcher.is_queued(ticket).await {
                tokio::time::sleep(attempt.grace.as_std() + REPORT_SLACK).await;
            }
        };
        tokio::select! {
            answered = answer => {
                held.ticket = None;
                match answered {
                    Ok(ended) => self.received(ended, attempt.carried.as_deref()),
                    Err(_) => Outcome::Failed(Failure::new(
                        FailureKind::Lost,
                        "lost: the dispatcher dropped the attempt",
                    )),
                }
            }
            () = limit => Outcome::Failed(timed_out(attempt.timeout)),
            Ok(()) = kill => Outcome::Cancelled,
        }
    }
}

impl Remote {
    /// The attempt's end, its files checked: each one the worker names
    /// must have been uploaded, under a path inside its working directory,
    /// and only files its `artifacts:` asked for come back at all.
    fn received(&self, ended: Ended, carried: Option<&Carried>) -> Outcome {
        if let Some(carried) = carried {
            *carried
                .worker
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = ended.worker.clone();
        }
        if ended.files.is_empty() {
            return ended.outcome;
        }
        let Some(carried) = carried.filter(|carried| !carried.declared.is_empty()) else {
            return Outcome::Failed(Failure::new(
                FailureKind::Error,
                "the worker reported files the task declares no `artifacts:` for",
            ));
        };
        let mut produced = Vec::with_capacity(ended.files.len());
        for file in ended.files {
            let inside = crate::artifacts::stays_inside(&file.path);
            let digest = file
                .sha256
                .parse::<Digest>()
                .ok()
                .filter(|digest| self.dispatcher.holds_file(digest));
            match (inside, digest) {
                (true, Some(digest)) => produced.push(Artifact {
                    path: file.path,
                    digest,
                    size: file.size,
                }),
                (false, _) => {
                    return Outcome::Failed(Failure::new(
                        FailureKind::Error,
                        format!(
                            "the worker reported `{}`, a path outside the task's directory",
                            file.path
                        ),
                    ));
                }
                (true, None) => {
                    return Outcome::Failed(Failure::new(
                        FailureKind::Error,
                        format!(
                            "the worker reported `{}` ({}), which it did not upload",
                            file.path, file.sha256
                        ),
                    ));
                }
            }
        }
        produced.sort_by(|a, b| a.path.cmp(&b.path));
        *carried
            .produced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = produced;
        ended.outcome
    }
}

/// Takes the attempt back from the dispatcher unless it ended there: a
/// kill, a timeout or the run loop dropping the attempt withdraws it.
struct Withdraw {
    dispatcher: Arc<Dispatcher>,
    ticket: Option<Ticket>,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.dispatcher.withdraw(ticket);
        }
    }
}

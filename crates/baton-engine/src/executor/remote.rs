//! Attempts routed to a capability (an `agent` task no configured endpoint
//! serves, a task with `runs_on`): handed to the dispatcher, which leases
//! them to a remote worker and answers with how they ended.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use baton_core::run::{Failure, FailureKind, Work};
use tokio::sync::oneshot;

use super::job::{Attempt, Executor, Kill, Outcome, timed_out};
use crate::remote::protocol::{Lease, LeasedWork};
use crate::remote::{Dispatcher, Item, Ticket};

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
        };
        let (reply, answer) = oneshot::channel();
        let timeout = attempt.timeout.map(|timeout| timeout.as_std());
        let ticket = self.dispatcher.submit(Item {
            route,
            lease,
            prefix: attempt.prefix.clone(),
            queued: Instant::now(),
            timeout,
            reply,
        });
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
            if !dispatcher.is_queued(ticket) {
                tokio::time::sleep(attempt.grace.as_std() + REPORT_SLACK).await;
            }
        };
        tokio::select! {
            answered = answer => {
                held.ticket = None;
                answered.unwrap_or_else(|_| Outcome::Failed(Failure::new(
                    FailureKind::Lost,
                    "lost: the dispatcher dropped the attempt",
                )))
            }
            () = limit => Outcome::Failed(timed_out(attempt.timeout)),
            Ok(()) = kill => Outcome::Cancelled,
        }
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

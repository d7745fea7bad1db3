//! What runs report to the `metrics` facade: counters and histograms per
//! persisted event, gauges kept by the changes each batch makes. Off until
//! a program that collects them turns it on ([`report_metrics`], as `baton
//! serve` does): even calls into a facade with no recorder cost a run of
//! no-op tasks a third of its speed.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

static REPORTING: AtomicBool = AtomicBool::new(false);

/// Makes every run of this process report its metrics to the `metrics`
/// facade's recorder from now on.
pub fn report_metrics() {
    REPORTING.store(true, Ordering::Relaxed);
}

use baton_core::run::{Event, FailureKind, RunState};

/// The gauges one run adds to, so they can be taken back as it changes
/// and when it ends.
#[derive(Default)]
pub(crate) struct Observer {
    running: u32,
    waiting: u32,
    ready: usize,
}

impl Observer {
    /// Reports a persisted batch: `events` are applied to `state`, and
    /// their append took `append`.
    pub(crate) fn batch(&mut self, state: &RunState, events: &[Event], append: Duration) {
        if !REPORTING.load(Ordering::Relaxed) {
            return;
        }
        metrics::histogram!("baton_event_append_seconds").record(append.as_secs_f64());
        for event in events {
            observe(state, event);
        }
        self.gauges(state);
    }

    fn gauges(&mut self, state: &RunState) {
        let running = state.running();
        let waiting = state.waiting();
        let ready = state.ready_count();
        metrics::gauge!("baton_running_tasks")
            .increment(f64::from(running) - f64::from(self.running));
        metrics::gauge!("baton_approvals_waiting")
            .increment(f64::from(waiting) - f64::from(self.waiting));
        metrics::gauge!("baton_ready_tasks").increment(ready as f64 - self.ready as f64);
        (self.running, self.waiting, self.ready) = (running, waiting, ready);
    }
}

impl Drop for Observer {
    /// A run that stops (ends, or its store fails) no longer counts.
    fn drop(&mut self) {
        metrics::gauge!("baton_running_tasks").decrement(f64::from(self.running));
        metrics::gauge!("baton_approvals_waiting").decrement(f64::from(self.waiting));
        metrics::gauge!("baton_ready_tasks").decrement(self.ready as f64);
    }
}

fn seconds(millis: u64) -> f64 {
    millis as f64 / 1000.0
}

fn observe(state: &RunState, event: &Event) {
    match *event {
        Event::RunStarted { .. } => metrics::counter!("baton_runs_started_total").increment(1),
        Event::RunFinished { status, .. } => {
            metrics::counter!("baton_runs_finished_total", "status" => status.name()).increment(1);
        }
        Event::TaskStarted { at, task, attempt } => {
            if attempt > 1 {
                metrics::counter!("baton_task_retries_total").increment(1);
                return;
            }
            // Ready since its last need ended (or the run began).
            let ready_at = state
                .valid()
                .dag()
                .needs(task)
                .iter()
                .filter_map(|&need| state.times(need).1)
                .chain(state.started_at())
                .max()
                .unwrap_or(at);
            metrics::histogram!("baton_task_queue_wait_seconds")
                .record(seconds(at.since(ready_at).as_millis()));
        }
        Event::TaskSucceeded { at, task, .. } | Event::TaskFailed { at, task, .. } => {
            let kind = state.task(task).kind.name();
            let ran = at.since(state.attempt_started(task)).as_millis();
            metrics::histogram!("baton_task_duration_seconds", "kind" => kind).record(seconds(ran));
            if let Event::TaskFailed { failure, .. } = event
                && failure.kind == FailureKind::Timeout
            {
                metrics::counter!("baton_task_timeouts_total").increment(1);
            }
            finished(state, task);
        }
        Event::TaskSkipped { task, .. } | Event::TaskCancelled { task, .. } => {
            finished(state, task)
        }
        _ => {}
    }
}

/// Counts a task whose event left it final (a failure it retries is not).
fn finished(state: &RunState, task: u32) {
    let status = state.status(task);
    if status.is_final() {
        let kind = state.task(task).kind.name();
        metrics::counter!("baton_tasks_finished_total", "status" => status.name(), "kind" => kind)
            .increment(1);
    }
}

//! Figures of a run, read off its state.

use crate::duration::Duration;

use super::RunState;

impl RunState {
    /// Figures for the run so far.
    pub fn metrics(&self) -> RunMetrics {
        let dag = self.valid.dag();
        let count = self.progress.status.len();
        let mut by_level: Vec<u32> = (0..count as u32).collect();
        by_level.sort_by_key(|&task| dag.level(task));
        let mut path = vec![0u64; count];
        let mut critical = 0u64;
        for &task in &by_level {
            let longest_need = dag
                .needs(task)
                .iter()
                .map(|&need| path[need as usize])
                .max()
                .unwrap_or(0);
            path[task as usize] = longest_need + self.elapsed(task).as_millis();
            critical = critical.max(path[task as usize]);
        }
        let mut usage = Usage::default();
        for output in self.progress.outputs.iter().flatten() {
            if let Ok(reported) = output.get_attr("baton") {
                if let Some(tokens) = reported
                    .get_attr("tokens")
                    .ok()
                    .and_then(|tokens| u64::try_from(tokens).ok())
                {
                    usage.tokens += tokens;
                }
                if let Some(cost) = reported
                    .get_attr("cost")
                    .ok()
                    .and_then(|cost| f64::try_from(cost).ok())
                {
                    usage.cost += cost;
                }
            }
        }
        let wall = match (self.progress.started_at, self.progress.finished_at) {
            (Some(start), Some(end)) => end.since(start),
            _ => Duration::ZERO,
        };
        let task_time = Duration::from_millis(self.progress.busy.iter().sum());
        RunMetrics {
            wall,
            task_time,
            parallelism: if wall.is_zero() {
                0.0
            } else {
                task_time.as_millis() as f64 / wall.as_millis() as f64
            },
            attempts: self
                .progress
                .attempts
                .iter()
                .map(|&attempts| u64::from(attempts))
                .sum(),
            critical_path: Duration::from_millis(critical),
            usage,
        }
    }
}

/// Figures of one run, from its events.
#[derive(
    Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct RunMetrics {
    pub wall: Duration,
    /// Time spent in task attempts, summed.
    pub task_time: Duration,
    /// `task_time / wall`: how many attempts were in flight on average. Not
    /// a speedup over one core: waiting (a sleep, an HTTP call, a child
    /// run) counts as task time, so it can pass the number of cores.
    #[serde(alias = "speedup")]
    pub parallelism: f64,
    pub attempts: u64,
    /// The longest chain of needs, by the time each task took.
    pub critical_path: Duration,
    pub usage: Usage,
}

/// What tasks report under the reserved `baton` key of their output.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
pub struct Usage {
    pub tokens: u64,
    pub cost: f64,
}

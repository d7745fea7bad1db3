//! Planning a valid DAG: run order, levels, critical path and width.
//!
//! The order is level by level (a task's level is its longest distance from
//! a root), and within a level by priority (higher first) then task id. That
//! is the order an unbounded scheduler starts tasks in when every task takes
//! as long as every other, and it is the same for the same spec every time.

use rayon::prelude::*;
use serde::Serialize;

use crate::check::Dag;
use crate::duration::Duration;
use crate::spec::Workflow;

/// The estimate of a task that gives none.
pub const DEFAULT_ESTIMATE: Duration = Duration::from_secs(1);

/// A deterministic schedule of a valid workflow, by task index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Every task once, level by level.
    pub order: Vec<u32>,
    /// Level `k` is `order[level_starts[k]..level_starts[k + 1]]`.
    pub level_starts: Vec<u32>,
    /// The chain of tasks with the longest summed estimate, first to last.
    pub critical_path: Vec<u32>,
    pub critical_path_estimate: Duration,
    /// The sum of all estimates: the run's length with one task at a time.
    pub serial_estimate: Duration,
    /// The most tasks that can run at once.
    pub max_width: usize,
}

impl Plan {
    pub fn new(workflow: &Workflow, dag: &Dag) -> Plan {
        let tasks = &workflow.tasks;
        let level_count = dag.level_count() as usize;
        let mut level_starts = vec![0u32; level_count + 1];
        for task in 0..dag.len() as u32 {
            level_starts[dag.level(task) as usize + 1] += 1;
        }
        let max_width = level_starts.iter().copied().max().unwrap_or(0) as usize;
        for level in 1..level_starts.len() {
            level_starts[level] += level_starts[level - 1];
        }
        let mut cursor = level_starts.clone();
        let mut order = vec![0u32; dag.len()];
        for task in 0..dag.len() as u32 {
            let slot = &mut cursor[dag.level(task) as usize];
            order[*slot as usize] = task;
            *slot += 1;
        }
        let mut levels: Vec<&mut [u32]> = Vec::with_capacity(level_count);
        let mut rest = order.as_mut_slice();
        for window in level_starts.windows(2) {
            let (level, tail) = rest.split_at_mut((window[1] - window[0]) as usize);
            levels.push(level);
            rest = tail;
        }
        levels.par_iter_mut().for_each(|level| {
            level.sort_unstable_by(|&a, &b| {
                let (a, b) = (&tasks[a as usize], &tasks[b as usize]);
                b.priority.cmp(&a.priority).then_with(|| a.id.cmp(&b.id))
            });
        });

        let estimate = |task: u32| {
            tasks[task as usize]
                .modifiers()
                .estimate
                .unwrap_or(DEFAULT_ESTIMATE)
                .as_millis()
        };
        let mut finish = vec![0u64; dag.len()];
        let mut via = vec![u32::MAX; dag.len()];
        let mut serial: u64 = 0;
        for &task in &order {
            let (mut start, mut longest) = (0u64, u32::MAX);
            for &need in dag.needs(task) {
                if longest == u32::MAX || finish[need as usize] > start {
                    (start, longest) = (finish[need as usize], need);
                }
            }
            via[task as usize] = longest;
            finish[task as usize] = start.saturating_add(estimate(task));
            serial = serial.saturating_add(estimate(task));
        }
        let mut critical_path = Vec::new();
        let last = order
            .iter()
            .copied()
            .max_by(|&a, &b| finish[a as usize].cmp(&finish[b as usize]).then(b.cmp(&a)));
        let mut cursor = last;
        while let Some(task) = cursor {
            critical_path.push(task);
            cursor = Some(via[task as usize]).filter(|&need| need != u32::MAX);
        }
        critical_path.reverse();
        Plan {
            order,
            level_starts,
            critical_path_estimate: Duration::from_millis(
                last.map_or(0, |task| finish[task as usize]),
            ),
            critical_path,
            serial_estimate: Duration::from_millis(serial),
            max_width,
        }
    }

    pub fn level_count(&self) -> usize {
        self.level_starts.len() - 1
    }

    /// The task indices of level `level`, in plan order.
    pub fn level(&self, level: usize) -> &[u32] {
        &self.order[self.level_starts[level] as usize..self.level_starts[level + 1] as usize]
    }

    /// The plan with task ids instead of indices, for printing and JSON.
    pub fn report<'w>(&self, workflow: &'w Workflow) -> PlanReport<'w> {
        let id = |task: &u32| workflow.tasks[*task as usize].id.as_str();
        PlanReport {
            workflow: &workflow.name,
            tasks: self.order.len(),
            levels: (0..self.level_count())
                .map(|level| self.level(level).iter().map(id).collect())
                .collect(),
            critical_path: self.critical_path.iter().map(id).collect(),
            critical_path_estimate: self.critical_path_estimate,
            serial_estimate: self.serial_estimate,
            max_width: self.max_width,
        }
    }
}

/// A [`Plan`] by task id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlanReport<'w> {
    pub workflow: &'w str,
    pub tasks: usize,
    pub levels: Vec<Vec<&'w str>>,
    pub critical_path: Vec<&'w str>,
    pub critical_path_estimate: Duration,
    pub serial_estimate: Duration,
    pub max_width: usize,
}

#[cfg(test)]
mod tests {
    use crate::{Format, check_source};

    fn plan(text: &str) -> String {
        let valid = check_source(text, Format::Yaml).unwrap();
        let report = valid.plan().report(valid.workflow());
        format!(
            "levels: {:?}\ncritical: {:?} {}\nserial: {} width: {}",
            report.levels,
            report.critical_path,
            report.critical_path_estimate,
            report.serial_estimate,
            report.max_width
        )
    }

    #[test]
    fn levels_order_by_priority_then_id() {
        let text = "name: w\ntasks:\n  z: {noop: true}\n  b: {noop: true}\n  a: {noop: true}\n  urgent: {noop: true, priority: 5}\n  join: {noop: true, needs: [z, b, a, urgent]}\n";
        expect_test::expect![[r#"
            levels: [["urgent", "a", "b", "z"], ["join"]]
            critical: ["z", "join"] 2s
            serial: 5s width: 4"#]]
        .assert_eq(&plan(text));
    }

    #[test]
    fn critical_path_follows_the_longest_estimates() {
        let text = "name: w\ntasks:\n  fetch: {noop: true, estimate: 10s}\n  lint: {noop: true}\n  build: {noop: true, needs: [fetch], estimate: 1m}\n  test: {noop: true, needs: [build, lint], estimate: 30s}\n  docs: {noop: true, needs: [lint]}\n";
        expect_test::expect![[r#"
            levels: [["fetch", "lint"], ["build", "docs"], ["test"]]
            critical: ["fetch", "build", "test"] 1m40s
            serial: 1m42s width: 2"#]]
        .assert_eq(&plan(text));
    }

    #[test]
    fn the_same_spec_always_gives_the_same_plan() {
        let shape = crate::generate::Shape {
            nodes: 2_000,
            seed: 7,
        };
        let text = serde_json::to_string(&crate::generate::generate(&shape)).unwrap();
        let first = check_source(&text, Format::Json).unwrap().plan();
        let second = crate::check(crate::generate::generate(&shape))
            .unwrap()
            .plan();
        assert_eq!(first, second);
    }

    proptest::proptest! {
        /// Random DAGs (each task needs some earlier ones): the plan lists
        /// every task once, after all of its needs, on a higher level.
        #[test]
        fn plans_of_random_dags_are_topological(
            needs in proptest::collection::vec(proptest::collection::vec(0usize..1000, 0..4), 1..60),
            priorities in proptest::collection::vec(-2i32..3, 60),
        ) {
            let mut builder = crate::Workflow::builder("random");
            for (index, picks) in needs.iter().enumerate() {
                let mut wanted: Vec<String> = picks.iter().filter(|_| index > 0).map(|pick| format!("t{}", pick % index)).collect();
                wanted.sort();
                wanted.dedup();
                builder = builder
                    .task(format!("t{index}"), crate::TaskKind::Noop)
                    .needs(wanted)
                    .priority(priorities[index])
                    .done();
            }
            let valid = builder.build().unwrap();
            let plan = valid.plan();
            let dag = valid.dag();
            let mut position = vec![usize::MAX; dag.len()];
            for (at, &task) in plan.order.iter().enumerate() {
                proptest::prop_assert_eq!(position[task as usize], usize::MAX);
                position[task as usize] = at;
            }
            for task in 0..dag.len() as u32 {
                for &need in dag.needs(task) {
                    proptest::prop_assert!(position[need as usize] < position[task as usize]);
                    proptest::prop_assert!(dag.level(need) < dag.level(task));
                }
            }
            proptest::prop_assert_eq!(plan, super::Plan::new(valid.workflow(), dag));
        }
    }
}

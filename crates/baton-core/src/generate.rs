//! The one generator of benchmark graphs, so every figure in BENCHMARKS.md
//! is measured on the same shape: `nodes` no-op tasks in levels of width
//! about √nodes, each needing 3 distinct random tasks of the level before
//! (all of them when that level has fewer). Same shape, same graph.

use crate::seed::SplitMix64;
use crate::spec::{Task, TaskKind, Workflow};

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub nodes: usize,
    pub seed: u64,
}

/// Needs per task, when the previous level is wide enough.
pub const FAN_IN: usize = 3;

/// A layered DAG of `shape.nodes` noop tasks named `t0`, `t1`, ...
pub fn generate(shape: &Shape) -> Workflow {
    let width = ((shape.nodes as f64).sqrt().round() as usize).max(1);
    let mut random = SplitMix64(shape.seed);
    let mut workflow = Workflow::new(format!("generated-{}-{}", shape.nodes, shape.seed));
    workflow.tasks.reserve_exact(shape.nodes);
    let mut previous = 0..0;
    let mut picks = Vec::with_capacity(FAN_IN);
    while workflow.tasks.len() < shape.nodes {
        let level = workflow.tasks.len()..(workflow.tasks.len() + width).min(shape.nodes);
        for position in level.clone() {
            picks.clear();
            if previous.len() <= FAN_IN {
                picks.extend(previous.clone());
            } else {
                while picks.len() < FAN_IN {
                    let pick = previous.start + random.below(previous.len() as u64) as usize;
                    if !picks.contains(&pick) {
                        picks.push(pick);
                    }
                }
            }
            let mut task = Task::new(format!("t{position}"), TaskKind::Noop);
            task.needs = picks
                .iter()
                .map(|pick| compact_str::format_compact!("t{pick}"))
                .collect();
            workflow.tasks.push(task);
        }
        previous = level;
    }
    workflow
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_levels_of_square_root_width_with_three_needs() {
        let workflow = generate(&Shape {
            nodes: 100,
            seed: 1,
        });
        assert_eq!(workflow.tasks.len(), 100);
        assert!(
            workflow.tasks[..10]
                .iter()
                .all(|task| task.needs.is_empty())
        );
        assert!(
            workflow.tasks[10..]
                .iter()
                .all(|task| task.needs.len() == FAN_IN)
        );
        let valid = crate::check(workflow).unwrap();
        assert_eq!(valid.dag().level_count(), 10);
        assert_eq!(valid.plan().max_width, 10);
    }

    #[test]
    fn the_same_seed_gives_the_same_graph() {
        let shape = Shape {
            nodes: 500,
            seed: 42,
        };
        assert_eq!(generate(&shape), generate(&shape));
        assert_ne!(generate(&shape), generate(&Shape { seed: 43, ..shape }));
    }
}

//! Where each task goes in a drawing of a workflow's graph (the
//! dashboard's DAG): a layered drawing, left to right. Each task sits in the
//! column of its level (the planner's: the longest chain of needs before
//! it); within a column, tasks are ordered to cross fewer edges by
//! barycentre sweeps (each task moves towards the mean place of its needs,
//! then of its dependants), keeping the order with the fewest crossings.
//! Ties break by task index, so the same graph is always drawn the same
//! way. Written here rather than taken from a graph-drawing crate because
//! it must run on 10,000-task graphs in milliseconds, on the planner's own
//! levels, with nothing to install.

use serde::Serialize;

use crate::check::Dag;

/// The sizes a drawing is made with, in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Geometry {
    pub node_width: f64,
    pub node_height: f64,
    /// Between columns (levels).
    pub column_gap: f64,
    /// Between tasks of one column.
    pub row_gap: f64,
}

impl Default for Geometry {
    fn default() -> Geometry {
        Geometry {
            node_width: 160.0,
            node_height: 36.0,
            column_gap: 60.0,
            row_gap: 14.0,
        }
    }
}

/// A task's place in the drawing; `x` and `y` are its box's top left.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Placed {
    pub task: u32,
    pub level: u32,
    /// Its place in its column, from the top.
    pub row: u32,
    pub x: f64,
    pub y: f64,
}

/// A drawing of a graph: every task placed, by task index.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Layout {
    pub nodes: Vec<Placed>,
    pub width: f64,
    pub height: f64,
    pub node_width: f64,
    pub node_height: f64,
    /// Crossings between edges of adjacent columns in the order drawn.
    pub crossings: u64,
}

/// Sweeps of barycentre ordering (one down and one up each) at most.
const SWEEPS: usize = 8;

/// Lays out `dag` with `geometry`.
pub fn layout(dag: &Dag, geometry: Geometry) -> Layout {
    let count = dag.len();
    let mut columns: Vec<Vec<u32>> = vec![Vec::new(); dag.level_count() as usize];
    for task in 0..count as u32 {
        columns[dag.level(task) as usize].push(task);
    }
    let mut row = vec![0u32; count];
    place(&columns, &mut row);
    let mut best = (crossings(dag, &columns, &row), columns.clone());
    for _ in 0..SWEEPS {
        for level in 1..columns.len() {
            reorder(&mut columns[level], &row, |task| dag.needs(task));
            place(&columns[level..=level], &mut row);
        }
        for level in (0..columns.len().saturating_sub(1)).rev() {
            reorder(&mut columns[level], &row, |task| dag.dependants(task));
            place(&columns[level..=level], &mut row);
        }
        let now = crossings(dag, &columns, &row);
        if now >= best.0 {
            break;
        }
        best = (now, columns.clone());
        if now == 0 {
            break;
        }
    }
    let (crossings, columns) = best;
    place(&columns, &mut row);
    let tallest = columns.iter().map(Vec::len).max().unwrap_or(0) as f64;
    let row_step = geometry.node_height + geometry.row_gap;
    let column_step = geometry.node_width + geometry.column_gap;
    let height = (tallest * row_step - geometry.row_gap).max(0.0);
    let mut nodes = vec![
        Placed {
            task: 0,
            level: 0,
            row: 0,
            x: 0.0,
            y: 0.0,
        };
        count
    ];
    for (level, column) in columns.iter().enumerate() {
        // Each column is centred on the tallest.
        let offset = (tallest - column.len() as f64) * row_step / 2.0;
        for (place, &task) in column.iter().enumerate() {
            nodes[task as usize] = Placed {
                task,
                level: level as u32,
                row: place as u32,
                x: level as f64 * column_step,
                y: offset + place as f64 * row_step,
            };
        }
    }
    Layout {
        nodes,
        width: (columns.len() as f64 * column_step - geometry.column_gap).max(0.0),
        height,
        node_width: geometry.node_width,
        node_height: geometry.node_height,
        crossings,
    }
}

/// Records each task's row in `columns`.
fn place(columns: &[Vec<u32>], row: &mut [u32]) {
    for column in columns {
        for (place, &task) in column.iter().enumerate() {
            row[task as usize] = place as u32;
        }
    }
}

/// Orders `column` by the mean row of each task's `neighbours`, keeping
/// tasks without neighbours where they were; ties by task index.
fn reorder<'a>(column: &mut [u32], row: &[u32], neighbours: impl Fn(u32) -> &'a [u32]) {
    let mut keyed: Vec<(f64, u32)> = column
        .iter()
        .map(|&task| {
            let around = neighbours(task);
            let centre = match around.len() {
                0 => f64::from(row[task as usize]),
                n => {
                    around
                        .iter()
                        .map(|&other| f64::from(row[other as usize]))
                        .sum::<f64>()
                        / n as f64
                }
            };
            (centre, task)
        })
        .collect();
    keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    for (slot, (_, task)) in column.iter_mut().zip(keyed) {
        *slot = task;
    }
}

/// Crossings between the edges that join adjacent columns: for each pair
/// of columns, the edges sorted by their upper end, counted by inversions
/// of their lower ends (a Fenwick tree, so n log n).
fn crossings(dag: &Dag, columns: &[Vec<u32>], row: &[u32]) -> u64 {
    let mut total = 0;
    let mut edges: Vec<(u32, u32)> = Vec::new();
    for (level, column) in columns.iter().enumerate().skip(1) {
        edges.clear();
        for &task in column {
            for &need in dag.needs(task) {
                if dag.level(need) as usize == level - 1 {
                    edges.push((row[need as usize], row[task as usize]));
                }
            }
        }
        edges.sort_unstable();
        let mut tree = vec![0u64; column.len() + 1];
        for (seen, &(_, lower)) in edges.iter().enumerate() {
            // Edges before this one whose lower end is below it cross it.
            let mut at_or_above = 0;
            let mut index = lower as usize + 1;
            while index > 0 {
                at_or_above += tree[index];
                index &= index - 1;
            }
            total += seen as u64 - at_or_above;
            let mut index = lower as usize + 1;
            while index < tree.len() {
                tree[index] += 1;
                index += index & index.wrapping_neg();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{Shape, generate};
    use crate::{Workflow, check};

    fn dag_of(workflow: Workflow) -> Dag {
        check(workflow).unwrap().dag().clone()
    }

    fn spec(text: &str) -> Workflow {
        crate::load(text, crate::Format::Yaml).workflow.unwrap()
    }

    fn overlapping(layout: &Layout) -> Option<(u32, u32)> {
        let mut boxes: Vec<&Placed> = layout.nodes.iter().collect();
        boxes.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
        boxes.windows(2).find_map(|pair| {
            let (a, b) = (pair[0], pair[1]);
            let apart = b.x >= a.x + layout.node_width || b.y >= a.y + layout.node_height;
            (!apart).then_some((a.task, b.task))
        })
    }

    #[test]
    fn no_two_tasks_overlap_and_every_task_sits_in_its_levels_column() {
        for nodes in [1, 7, 100, 2_000] {
            let dag = dag_of(generate(&Shape { nodes, seed: 3 }));
            let layout = layout(&dag, Geometry::default());
            assert_eq!(layout.nodes.len(), nodes);
            assert_eq!(overlapping(&layout), None, "{nodes} tasks");
            for node in &layout.nodes {
                assert_eq!(node.level, dag.level(node.task));
                assert!(node.x + layout.node_width <= layout.width + 0.001);
                assert!(node.y >= 0.0 && node.y + layout.node_height <= layout.height + 0.001);
            }
        }
    }

    #[test]
    fn the_same_graph_is_drawn_the_same_way() {
        let dag = dag_of(generate(&Shape {
            nodes: 500,
            seed: 9,
        }));
        assert_eq!(
            layout(&dag, Geometry::default()),
            layout(&dag, Geometry::default())
        );
    }

    #[test]
    fn barycentre_ordering_undoes_crossings_the_declared_order_makes() {
        // Declared order puts `a` over `b`, but `a` feeds the lower task.
        let dag = dag_of(spec(
            "name: crossed\ntasks:\n  a: {noop: true}\n  b: {noop: true}\n  \
             c: {noop: true, needs: [b]}\n  d: {noop: true, needs: [a]}\n",
        ));
        let mut row = vec![0; 4];
        let declared = vec![vec![0, 1], vec![2, 3]];
        place(&declared, &mut row);
        assert_eq!(crossings(&dag, &declared, &row), 1);
        let drawn = layout(&dag, Geometry::default());
        assert_eq!(drawn.crossings, 0);
        let row_of = |task: usize| drawn.nodes[task].row;
        assert_eq!(row_of(0) < row_of(1), row_of(3) < row_of(2));
    }

    #[test]
    fn crossings_never_grow_on_a_generated_graph() {
        let dag = dag_of(generate(&Shape {
            nodes: 2_000,
            seed: 5,
        }));
        let mut columns: Vec<Vec<u32>> = vec![Vec::new(); dag.level_count() as usize];
        for task in 0..dag.len() as u32 {
            columns[dag.level(task) as usize].push(task);
        }
        let mut row = vec![0; dag.len()];
        place(&columns, &mut row);
        let before = crossings(&dag, &columns, &row);
        let after = layout(&dag, Geometry::default()).crossings;
        assert!(after < before, "{after} crossings after, {before} before");
    }
}

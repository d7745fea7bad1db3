//! A workflow's graph as the dashboard draws it: every task placed by
//! `baton_core::layout` (columns by level, fewer crossings), and the
//! edges, by task id. `GET /api/v1/workflows/{name}/graph?format=layout`.

use baton_core::Valid;
use baton_core::layout::{Geometry, layout};
use serde::Serialize;

/// A drawing of a workflow's graph, in pixels.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Drawing {
    pub(crate) width: f64,
    pub(crate) height: f64,
    pub(crate) node_width: f64,
    pub(crate) node_height: f64,
    /// Edges between adjacent columns that still cross.
    pub(crate) crossings: u64,
    /// Every task, in the workflow's order.
    pub(crate) nodes: Vec<DrawnTask>,
    /// `from` is needed by `to`.
    pub(crate) edges: Vec<DrawnEdge>,
}

/// A task's box: `x` and `y` are its top left.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DrawnTask {
    pub(crate) id: String,
    pub(crate) level: u32,
    pub(crate) row: u32,
    pub(crate) x: f64,
    pub(crate) y: f64,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct DrawnEdge {
    pub(crate) from: String,
    pub(crate) to: String,
}

pub(crate) fn drawing(valid: &Valid) -> Drawing {
    let (workflow, dag) = (valid.workflow(), valid.dag());
    let drawn = layout(dag, Geometry::default());
    let id = |task: u32| workflow.tasks[task as usize].id.to_string();
    Drawing {
        width: drawn.width,
        height: drawn.height,
        node_width: drawn.node_width,
        node_height: drawn.node_height,
        crossings: drawn.crossings,
        nodes: drawn
            .nodes
            .iter()
            .map(|placed| DrawnTask {
                id: id(placed.task),
                level: placed.level,
                row: placed.row,
                x: placed.x,
                y: placed.y,
            })
            .collect(),
        edges: (0..dag.len() as u32)
            .flat_map(|task| {
                dag.needs(task).iter().map(move |&need| DrawnEdge {
                    from: id(need),
                    to: id(task),
                })
            })
            .collect(),
    }
}

//! A workflow's graph as the dashboard draws it: every task placed by
//! `baton_core::layout` (columns by level, fewer crossings), and the
//! edges, by task id. `GET /api/v1/workflows/{name}/graph?format=layout`,
//! and `GET /api/v1/runs/{id}/graph` for the workflow a run runs.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use baton_core::Valid;
use baton_core::layout::{Geometry, layout};
use serde::Serialize;

use crate::AppState;
use crate::checking;
use crate::problem::{ApiError, PathArgs};
use crate::refusals;

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

/// `GET /api/v1/runs/{id}/graph`: the workflow the run runs (as pinned when
/// it started), placed for drawing; the run's own `tasks` say how each
/// stands.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/graph",
    tag = "runs",
    params(("id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run's graph placed for drawing", body = Drawing),
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn run_graph(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
) -> Result<Json<Drawing>, ApiError> {
    let record = app.engine.store().run(&run).await?;
    let valid = checking::workflow(Arc::unwrap_or_clone(record.workflow))
        .await?
        .map_err(ApiError::InvalidWorkflow)?;
    Ok(Json(drawing(&valid)))
}

//! `/metrics` in the Prometheus text format, and the latency of every API
//! request by route and status.
//!
//! A process has one metrics recorder: the first server made installs a
//! Prometheus one globally, so the engine's own metrics (runs, tasks,
//! appends) land in the same registry.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::refusals;

/// Seconds; from a fast API read to a slow task.
const BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The process's Prometheus registry, installed on first use. `None` if
/// another recorder was installed first (an embedding program's).
pub(crate) fn registry() -> Option<&'static PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .ok()?
                .install_recorder()
                .ok()?;
            baton_engine::report_metrics();
            // Counters an alert rule reads exist from the start, at zero.
            for counter in [
                "baton_worker_leases_lost_total",
                "baton_checkpoints_rejected_total",
                "baton_task_timeouts_total",
                "baton_task_retries_total",
            ] {
                metrics::counter!(counter).increment(0);
            }
            for kind in ["unavailable", "failed"] {
                metrics::counter!("baton_store_errors_total", "kind" => kind).increment(0);
            }
            for outcome in ["started", "skipped", "queued", "missed"] {
                metrics::counter!("baton_schedule_ticks_total", "outcome" => outcome).increment(0);
            }
            // Histograms are folded in on upkeep; a scrape renders what
            // was folded.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("baton-metrics-upkeep".to_owned())
                .spawn(move || {
                    loop {
                        std::thread::sleep(Duration::from_secs(5));
                        upkeep.run_upkeep();
                    }
                })
                .ok()?;
            Some(handle)
        })
        .as_ref()
}

/// `GET /metrics`.
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "service",
    responses(
        (status = 200, description = "Metrics in the Prometheus text format", content_type = "text/plain"),
        refusals::Unauthorized,
        refusals::Forbidden,
    ),
)]
pub(crate) async fn metrics(State(app): State<AppState>) -> Response {
    metrics::gauge!("baton_active_runs").set(app.active_runs() as f64);
    // The disk the state directory (logs, artifacts, SQLite) is on, or
    // will be once something is kept there.
    let state_dir = app.engine.state_dir();
    let existing = state_dir.ancestors().find(|dir| dir.exists());
    if let Some(Ok(disk)) = existing.map(nix::sys::statvfs::statvfs) {
        let block = disk.fragment_size() as f64;
        metrics::gauge!("baton_state_dir_free_bytes").set(disk.blocks_available() as f64 * block);
        metrics::gauge!("baton_state_dir_size_bytes").set(disk.blocks() as f64 * block);
    }
    let text = match registry() {
        Some(handle) => {
            handle.run_upkeep();
            handle.render()
        }
        None => String::new(),
    };
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// Times each request; the route is its pattern (`/api/v1/runs/{id}`), so
/// ids do not make a series each. With spans exported, each request is a
/// server span too, under the caller's `traceparent` when it sends one.
pub(crate) async fn measure(
    axum::extract::State(app): axum::extract::State<crate::AppState>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |path| path.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    // Only with spans exported: the caller's trace, and the start.
    let spans = app.engine.spans().map(|sink| {
        let caller = request
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
            .and_then(baton_core::run::trace_context::parse_traceparent);
        (sink, caller, app.now())
    });
    let response = next.run(request).await;
    let code = response.status().as_u16();
    if let Some((sink, caller, start)) = spans {
        sink.finished(server_span(caller, &method, &route, code, start, app.now()));
    }
    let labels = [
        ("route", route),
        ("method", method),
        ("status", code.to_string()),
    ];
    metrics::histogram!("baton_http_request_duration_seconds", &labels)
        .record(started.elapsed().as_secs_f64());
    metrics::counter!("baton_http_requests_total", &labels).increment(1);
    response
}

/// The span of one request: in the caller's trace if it named one, else in
/// a trace of its own.
fn server_span(
    caller: Option<([u8; 16], [u8; 8])>,
    method: &str,
    route: &str,
    code: u16,
    start: baton_core::run::Millis,
    end: baton_core::run::Millis,
) -> baton_engine::FinishedSpan {
    use baton_engine::SpanValue;
    let random = uuid::Uuid::new_v4().into_bytes();
    let mut span_id = [0; 8];
    span_id.copy_from_slice(&random[..8]);
    let (trace_id, parent) = match caller {
        Some((trace, parent)) => (trace, Some(parent)),
        None => (uuid::Uuid::new_v4().into_bytes(), None),
    };
    baton_engine::FinishedSpan {
        trace_id,
        span_id,
        parent,
        name: format!("{method} {route}"),
        kind: baton_engine::SpanKind::Server,
        start,
        end,
        attributes: vec![
            ("http.request.method", SpanValue::Text(method.to_owned())),
            ("http.route", SpanValue::Text(route.to_owned())),
            (
                "http.response.status_code",
                SpanValue::Number(i64::from(code)),
            ),
        ],
        error: (code >= 500).then(|| format!("answered {code}")),
    }
}

//! `GET /api/v1/schedules` and `POST /api/v1/schedules/{name}/backfill`.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use baton_core::timetable::{Timetable, parse_time};
use serde::Deserialize;

use super::backfill::{self, PlanError};
use crate::AppState;
use crate::api::{Backfill, BackfillRequest, ScheduleShown, TickShown};
use crate::problem::{ApiError, Body, PathArgs};
use crate::refusals;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct Next {
    /// How many next fire times to show, 1 to 50 (3 by default).
    #[param(minimum = 1, maximum = 50)]
    next: Option<usize>,
}

/// Every registered workflow with a schedule, by name.
#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "schedules",
    params(Next),
    responses(
        (status = 200, description = "Each schedule with its next fire times and last tick", body = Vec<ScheduleShown>),
        refusals::BadRequest,
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn list(
    State(app): State<AppState>,
    Query(next): Query<Next>,
) -> Result<Json<Vec<ScheduleShown>>, ApiError> {
    let count = next.next.unwrap_or(3);
    if !(1..=50).contains(&count) {
        return Err(ApiError::BadRequest("`next` is from 1 to 50".to_owned()));
    }
    Ok(Json(
        overview(app.engine.store().as_ref(), app.now(), count).await?,
    ))
}

/// Every schedule `store` holds with its next `count` fire times after
/// `now` and its last tick.
pub async fn overview(
    store: &dyn baton_store::Store,
    now: baton_core::run::Millis,
    count: usize,
) -> Result<Vec<ScheduleShown>, baton_store::Error> {
    let mut shown = Vec::new();
    for stored in store.workflows().await? {
        let Some(schedule) = &stored.workflow.schedule else {
            continue;
        };
        let Ok(timetable) = Timetable::new(schedule) else {
            continue;
        };
        let mut next = Vec::new();
        let mut after = now;
        while next.len() < count {
            let Some(tick) = timetable.next_after(after) else {
                break;
            };
            next.push(timetable.local(tick));
            after = tick;
        }
        let last = store
            .ticks(&stored.name, 1)
            .await?
            .into_iter()
            .next()
            .map(|tick| TickShown {
                tick: timetable.local(tick.at),
                at: tick.at,
                outcome: tick.outcome.name().to_owned(),
                run_id: tick.outcome.run_id().map(str::to_owned),
            });
        shown.push(ScheduleShown {
            workflow: stored.name.clone(),
            version: stored.version,
            cron: schedule.cron.clone(),
            timezone: schedule
                .timezone
                .clone()
                .unwrap_or_else(|| "UTC".to_owned()),
            catch_up: schedule.catch_up.name().to_owned(),
            overlap: schedule.overlap.name().to_owned(),
            next,
            last,
        });
    }
    Ok(shown)
}

/// Starts a backfill; answers at once with its ticks while their runs
/// start in the background, at most `concurrency` unfinished at once.
#[utoipa::path(
    post,
    path = "/api/v1/schedules/{name}/backfill",
    tag = "schedules",
    params(("name" = String, Path, description = "The registered workflow's name")),
    request_body(content = BackfillRequest, description = "The range of past ticks"),
    responses(
        (status = 202, description = "The ticks whose runs start, each with its run id", body = Backfill),
        refusals::BadRequest,
        refusals::UnsupportedMediaType,
        refusals::Unauthorized,
        refusals::Forbidden,
        refusals::NotFound,
        refusals::Unprocessable,
        refusals::Unavailable,
    ),
)]
pub(crate) async fn backfill(
    State(app): State<AppState>,
    PathArgs(name): PathArgs<String>,
    Body(request): Body<BackfillRequest>,
) -> Result<(StatusCode, Json<Backfill>), ApiError> {
    if app.engine.is_draining() {
        return Err(baton_engine::Error::Draining.into());
    }
    let concurrency = request.concurrency.unwrap_or(4);
    if !(1..=64).contains(&concurrency) {
        return Err(ApiError::Unprocessable(
            "`concurrency` is from 1 to 64".to_owned(),
        ));
    }
    let planned = planned(&app, &name, &request).await?;
    let answer = Backfill {
        workflow: name.clone(),
        version: planned.workflow.version,
        concurrency,
        ticks: planned
            .ticks
            .iter()
            .map(|(at, run)| TickShown {
                tick: planned.timetable.local(*at),
                at: *at,
                outcome: "planned".to_owned(),
                run_id: Some(run.clone()),
            })
            .collect(),
    };
    tokio::spawn(async move {
        let started = backfill::run(&app, &planned, concurrency as usize, false, |_, _, _| {});
        if let Err(error) = started.await {
            tracing::warn!("backfill of {name}: {error}");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(answer)))
}

/// The backfill `request` asks of `name`, its times read in the schedule's
/// zone.
pub async fn planned(
    app: &AppState,
    name: &str,
    request: &BackfillRequest,
) -> Result<backfill::Planned, ApiError> {
    let stored = app.engine.store().workflow(name, None).await?;
    let zone = stored
        .workflow
        .schedule
        .as_ref()
        .and_then(|schedule| schedule.timezone.clone());
    let time = |text: &str, end_of_day: bool| {
        parse_time(text, zone.as_deref(), end_of_day).ok_or_else(|| {
            ApiError::Unprocessable(format!(
                "`{text}` is not a date (2026-11-01) or a time (2026-11-01T02:00, or RFC 3339)"
            ))
        })
    };
    let from = time(&request.from, false)?;
    let to = time(&request.to, true)?;
    backfill::plan(app, name, from, to, app.now())
        .await
        .map_err(|error| match error {
            PlanError::Store(store) => store.into(),
            other => ApiError::Unprocessable(other.to_string()),
        })
}

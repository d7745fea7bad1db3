//! A run's events as Server-Sent Events, from the durable log: a client
//! that reconnects with `Last-Event-ID` gets every event after that one,
//! exactly once, whoever drives the run.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use baton_core::Valid;
use baton_core::run::Event;
use baton_engine::RunEvent;
use baton_store::Change;
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::checking;
use crate::live::LiveEvent;
use crate::problem::{ApiError, PathArgs};
use crate::refusals;

/// `GET /api/v1/runs/{id}/events`.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/events",
    tag = "events",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Resume after this event"),
    ),
    responses(
        (status = 200, description = "The run's events as Server-Sent Events, ending with the run", content_type = "text/event-stream"),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn run_events(
    State(app): State<AppState>,
    PathArgs(run): PathArgs<String>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // An empty id is no id: what a client that has seen none may send.
    let resume = headers
        .get("last-event-id")
        .filter(|value| !value.as_bytes().trim_ascii().is_empty());
    let next = match resume {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .map(|seq| seq.saturating_add(1))
            .ok_or_else(|| {
                ApiError::BadRequest(
                    "Last-Event-ID must be the number of an event of this run".to_owned(),
                )
            })?,
    };
    // Subscribed before the log is read, so no event falls between the two.
    let live = app.live.subscribe();
    let changes = app.engine.store().changes();
    let record = app.engine.store().run(&run).await?;
    let valid = checking::workflow(Arc::unwrap_or_clone(record.workflow))
        .await?
        .map_err(|problems| {
            ApiError::Internal(format!(
                "the recorded workflow does not check: {}",
                problems[0]
            ))
        })?;
    let (sender, mut receiver) = mpsc::channel(256);
    let follower = Follower {
        app,
        run,
        valid,
        next,
        sender,
    };
    tokio::spawn(follower.follow(live, changes));
    let stream = futures_util::stream::poll_fn(move |context| receiver.poll_recv(context));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

struct Follower {
    app: AppState,
    run: String,
    valid: Valid,
    /// The sequence number of the next event to send.
    next: u64,
    sender: mpsc::Sender<Result<SseEvent, Infallible>>,
}

impl Follower {
    /// Sends the log from `next` on, then live events as they come; goes
    /// back to the log on a gap or a lag, and when the store says the run's
    /// log grew past what was sent (another process drives it). Ends with
    /// the run's `run_finished`, or when the client goes away.
    async fn follow(
        mut self,
        mut live: broadcast::Receiver<Arc<LiveEvent>>,
        mut changes: broadcast::Receiver<Change>,
    ) {
        loop {
            let logged = match self
                .app
                .engine
                .store()
                .events_from(&self.run, self.next)
                .await
            {
                Ok(events) => events,
                // Recorded but not started yet.
                Err(baton_store::Error::UnknownRun(_)) => Vec::new(),
                Err(_) => return,
            };
            for event in logged {
                if !self.send(event).await {
                    return;
                }
            }
            loop {
                tokio::select! {
                    received = live.recv() => match received {
                        Ok(published) => {
                            if published.run != self.run || published.event.seq < self.next {
                                continue;
                            }
                            if published.event.seq > self.next {
                                break;
                            }
                            if !self.send(published.event.event.clone()).await {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    changed = changes.recv() => match changed {
                        Ok(Change::Appended { run, events, .. })
                            if *run == *self.run && events > self.next => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = self.sender.closed() => return,
                }
            }
        }
    }

    /// Sends the next event; false once there is nothing more to send.
    async fn send(&mut self, event: Event) -> bool {
        let finished = matches!(event, Event::RunFinished { .. });
        let line = RunEvent {
            seq: self.next,
            event,
        }
        .json(&self.valid);
        let kind = line["type"].as_str().unwrap_or("event").to_owned();
        let sse = SseEvent::default()
            .id(self.next.to_string())
            .event(kind)
            .data(line.to_string());
        self.next += 1;
        self.sender.send(Ok(sse)).await.is_ok() && !finished
    }
}

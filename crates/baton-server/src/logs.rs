//! `/api/v1/runs/{id}/tasks/{task}/logs`: what an attempt printed, whole,
//! or followed as it is written: as plain text, or as Server-Sent Events
//! whose ids are byte offsets, so a client that reconnects with
//! `Last-Event-ID` gets the rest of the log and nothing twice.

use std::convert::Infallible;
use std::io::SeekFrom;
use std::path::PathBuf;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_core::run::TaskStatus;
use baton_store::Change;
use serde::Deserialize;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::problem::{ApiError, PathArgs, Query};
use crate::refusals;

/// The most bytes one read (one SSE event, one body chunk) carries.
const CHUNK: usize = 64 * 1024;

/// How often a followed log is looked at for new bytes; the attempt's end
/// comes from the store's change feed at once.
const GROWTH: Duration = Duration::from_millis(100);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// The task's last attempt when absent.
    attempt: Option<u32>,
    /// stdout (default) or stderr.
    #[serde(default)]
    #[param(inline)]
    stream: LogStream,
    /// Bytes already read: the answer starts after them.
    #[serde(default)]
    offset: u64,
    /// Keep the answer open, sending what the attempt writes, until it
    /// ends: as Server-Sent Events when the request accepts
    /// `text/event-stream`, as plain text otherwise.
    #[serde(default)]
    follow: bool,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
enum LogStream {
    #[default]
    Stdout,
    Stderr,
}

/// `GET /api/v1/runs/{id}/tasks/{task}/logs`: what an attempt printed.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{id}/tasks/{task}/logs",
    tag = "runs",
    params(
        ("id" = String, Path, description = "The run's id"),
        ("task" = String, Path, description = "A task's id"),
        LogQuery,
        ("Last-Event-ID" = Option<u64>, Header, nullable = false, description = "Following as events: resume after this many bytes (overrides `offset`)"),
    ),
    responses(
        (status = 200, description = "What the attempt printed; followed as Server-Sent Events, `log` events (`{\"offset\", \"text\"}`, id the offset after them) and one `end`", content((String = "text/plain"), (String = "text/event-stream"))),
        refusals::BadRequest,
        refusals::Unauthorized,
        refusals::NotFound,
    ),
)]
pub(crate) async fn logs(
    State(app): State<AppState>,
    PathArgs((run, task)): PathArgs<(String, String)>,
    Query(query): Query<LogQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let rows = app.engine.store().tasks(&run).await?;
    let row = rows.iter().find(|row| row.id == task).ok_or_else(|| {
        ApiError::NotFound(format!("run `{run}` has no task `{task}` that started"))
    })?;
    let attempt = query.attempt.unwrap_or(row.attempts);
    if attempt == 0 || attempt > row.attempts {
        return Err(ApiError::NotFound(format!(
            "task `{task}` has {} attempt(s)",
            row.attempts
        )));
    }
    let file = match query.stream {
        LogStream::Stdout => baton_engine::logs::STDOUT_FILE,
        LogStream::Stderr => baton_engine::logs::STDERR_FILE,
    };
    let path = baton_engine::logs::attempt_file(
        &baton_engine::logs::attempt_prefix(app.engine.state_dir(), &run, &task, attempt),
        file,
    );
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !query.follow {
        let mut text = Vec::new();
        let mut offset = query.offset;
        loop {
            let chunk = read_from(&path, offset)
                .await
                .map_err(|error| ApiError::Internal(error.to_string()))?;
            if chunk.is_empty() {
                break;
            }
            offset += chunk.len() as u64;
            text.extend_from_slice(&chunk);
        }
        return Ok((text_plain, text).into_response());
    }
    let wants_events = headers
        .get(header::ACCEPT)
        .and_then(|accept| accept.to_str().ok())
        .is_some_and(|accept| accept.contains("text/event-stream"));
    let resume = headers
        .get("last-event-id")
        .filter(|value| !value.as_bytes().trim_ascii().is_empty());
    let offset = match resume {
        Some(value) if wants_events => value
            .to_str()
            .ok()
            .and_then(|text| text.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                ApiError::BadRequest("Last-Event-ID must be a byte offset into this log".to_owned())
            })?,
        _ => query.offset,
    };
    let (sender, mut receiver) = mpsc::channel(16);
    let tail = LogTail {
        changes: app.engine.store().changes(),
        app,
        run,
        task: row.task,
        attempt,
        path,
        offset,
    };
    tokio::spawn(tail.follow(sender));
    if wants_events {
        let stream = futures_util::stream::poll_fn(move |context| {
            receiver
                .poll_recv(context)
                .map(|piece| piece.map(|piece| Ok::<_, Infallible>(piece.event())))
        });
        return Ok(Sse::new(stream)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let stream = futures_util::stream::poll_fn(move |context| {
        receiver.poll_recv(context).map(|piece| match piece? {
            Piece::Text { bytes, .. } => Some(Ok(axum::body::Bytes::from(bytes))),
            Piece::End { .. } => None,
            Piece::Failed(error) => Some(Err(error)),
        })
    });
    Ok((text_plain, axum::body::Body::from_stream(stream)).into_response())
}

/// Up to [`CHUNK`] bytes of a log file after `offset`; none if it is not
/// written yet.
async fn read_from(path: &std::path::Path, offset: u64) -> std::io::Result<Vec<u8>> {
    let mut file = match tokio::fs::File::open(path).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    file.seek(SeekFrom::Start(offset)).await?;
    let mut bytes = Vec::with_capacity(CHUNK.min(8 * 1024));
    file.take(CHUNK as u64).read_to_end(&mut bytes).await?;
    Ok(bytes)
}

/// What a followed log sends.
enum Piece {
    /// Bytes of the log; `offset` is where they end.
    Text {
        bytes: Vec<u8>,
        offset: u64,
    },
    /// The attempt ended and all it wrote was sent.
    End {
        offset: u64,
    },
    Failed(std::io::Error),
}

impl Piece {
    fn event(self) -> SseEvent {
        match self {
            Piece::Text { bytes, offset } => SseEvent::default()
                .id(offset.to_string())
                .event("log")
                .data(
                    json!({
                        "offset": offset - bytes.len() as u64,
                        "text": String::from_utf8_lossy(&bytes),
                    })
                    .to_string(),
                ),
            Piece::End { offset } => SseEvent::default()
                .id(offset.to_string())
                .event("end")
                .data(json!({ "offset": offset }).to_string()),
            Piece::Failed(error) => SseEvent::default()
                .event("error")
                .data(json!({ "detail": error.to_string() }).to_string()),
        }
    }
}

/// One attempt's log, followed as it grows.
struct LogTail {
    app: AppState,
    changes: broadcast::Receiver<Change>,
    run: String,
    task: u32,
    attempt: u32,
    path: PathBuf,
    offset: u64,
}

impl LogTail {
    /// Sends what is new until the attempt has ended and its file is
    /// drained, or the client goes away. The store is read only when the
    /// change feed says the run moved on; the file is looked at every
    /// [`GROWTH`].
    async fn follow(mut self, sender: mpsc::Sender<Piece>) {
        let mut ended = self.ended().await;
        loop {
            // Whether it ended was read before this drain, which so takes
            // everything the attempt wrote.
            loop {
                let mut bytes = match read_from(&self.path, self.offset).await {
                    Ok(bytes) => bytes,
                    Err(error) => {
                        let _ = sender.send(Piece::Failed(error)).await;
                        return;
                    }
                };
                if !ended {
                    bytes.truncate(whole_characters(&bytes));
                }
                if bytes.is_empty() {
                    break;
                }
                self.offset += bytes.len() as u64;
                let piece = Piece::Text {
                    bytes,
                    offset: self.offset,
                };
                if sender.send(piece).await.is_err() {
                    return;
                }
            }
            if ended {
                let _ = sender
                    .send(Piece::End {
                        offset: self.offset,
                    })
                    .await;
                return;
            }
            tokio::select! {
                changed = self.changes.recv() => match changed {
                    Ok(change) if change.run() == self.run => ended = self.ended().await,
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => ended = self.ended().await,
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                () = tokio::time::sleep(GROWTH) => {}
                () = sender.closed() => return,
            }
        }
    }

    /// Whether the attempt has stopped writing: a later one began, or the
    /// task (or its run) is no longer running.
    async fn ended(&self) -> bool {
        let Ok(Some(row)) = self.app.engine.store().task(&self.run, self.task).await else {
            return true;
        };
        row.attempts > self.attempt || row.status != TaskStatus::Running
    }
}

/// How many leading bytes of `bytes` end on a character boundary: a
/// character the writer is still in the middle of waits for the next read.
fn whole_characters(bytes: &[u8]) -> usize {
    match std::str::from_utf8(bytes) {
        Ok(_) => bytes.len(),
        // A sequence cut short at the end; invalid bytes elsewhere go as
        // they are.
        Err(error) if error.error_len().is_none() && bytes.len() - error.valid_up_to() < 4 => {
            error.valid_up_to()
        }
        Err(_) => bytes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_in_two_waits_for_its_rest() {
        let text = "añ".as_bytes();
        assert_eq!(whole_characters(text), 3);
        assert_eq!(whole_characters(&text[..2]), 1);
        assert_eq!(whole_characters(b"\xff\xfeok"), 4);
    }
}

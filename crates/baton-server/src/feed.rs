//! `/api/v1/events`: every run's events in one stream, in the order the
//! store appended them, as Server-Sent Events or over a WebSocket. Each
//! event's id is `POSITION:INDEX` (its batch's place in the store's feed,
//! and its place in the batch), so a client that reconnects with the last
//! id it saw (`Last-Event-ID`, or `?after=`) misses nothing and sees
//! nothing twice.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_core::Valid;
use baton_engine::RunEvent;
use baton_store::{Change, FeedBatch};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc};

use crate::AppState;
use crate::checking;
use crate::problem::{ApiError, Query};
use crate::refusals;

/// Batches read from the store at a time.
const PAGE: usize = 256;

/// Where a stream starts: after event `index` of the batch at `position`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Cursor {
    position: u64,
    /// Events of that batch already seen; `None` once it is all seen.
    seen: Option<u32>,
}

impl Cursor {
    pub(crate) fn parse(text: &str) -> Result<Cursor, ApiError> {
        let malformed = || {
            ApiError::BadRequest(format!(
                "`{text}` is not an event id: ids read POSITION:INDEX"
            ))
        };
        let (position, index) = text.trim().split_once(':').ok_or_else(malformed)?;
        let position: u64 = position.parse().map_err(|_| malformed())?;
        let index: u32 = index.parse().map_err(|_| malformed())?;
        Ok(Cursor {
            position,
            seen: Some(index.saturating_add(1)),
        })
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct FeedQuery {
    /// Only this run's events.
    #[param(min_length = 1)]
    run: Option<String>,
    /// Start after this event id (what `Last-Event-ID` says for SSE).
    #[param(pattern = "^[0-9]{1,19}:[0-9]{1,9}$")]
    after: Option<String>,
}

impl FeedQuery {
    /// The run to follow; an empty one is refused, as the document says.
    fn checked_run(&self) -> Result<Option<String>, ApiError> {
        match self.run.as_deref() {
            Some("") => Err(ApiError::BadRequest(
                "`run` is empty: leave it out to follow every run".to_owned(),
            )),
            run => Ok(run.map(str::to_owned)),
        }
    }
}

/// One event for a client: its id, its type, and the event as JSON.
pub(crate) struct Item {
    pub(crate) id: String,
    pub(crate) kind: String,
    pub(crate) data: Value,
}

/// `GET /api/v1/events`.
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(
        FeedQuery,
        ("Last-Event-ID" = Option<String>, Header, nullable = false, pattern = "^([0-9]{1,19}:[0-9]{1,9})?$", description = "Resume after this event (POSITION:INDEX); empty for none"),
    ),
    responses(
        (status = 200, description = "Every run's events as Server-Sent Events, as they are appended", content_type = "text/event-stream"),
        refusals::BadRequest,
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn events(
    State(app): State<AppState>,
    Query(query): Query<FeedQuery>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    // `after` is checked even when the header overrides it: a request the
    // document refuses is refused whole.
    let after = query.after.as_deref().map(Cursor::parse).transpose()?;
    // An empty id is no id: what a client that has seen none may send.
    let resume = headers
        .get("last-event-id")
        .map(|value| value.to_str().unwrap_or("-"))
        .filter(|id| !id.trim().is_empty());
    let cursor = match resume {
        Some(id) => Cursor::parse(id)?,
        None => after.unwrap_or_default(),
    };
    let mut items = follow(app, cursor, query.checked_run()?);
    let (sender, mut receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        while let Some(item) = items.recv().await {
            let sse = SseEvent::default()
                .id(item.id)
                .event(item.kind)
                .data(item.data.to_string());
            if sender.send(Ok(sse)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |context| receiver.poll_recv(context));
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// `GET /api/v1/events/ws`: the same events as JSON text messages, each
/// with its `id`.
#[utoipa::path(
    get,
    path = "/api/v1/events/ws",
    tag = "events",
    params(
        FeedQuery,
        ("Connection" = String, Header, pattern = "^[Uu]pgrade$", description = "A WebSocket handshake (RFC 6455)"),
        ("Upgrade" = String, Header, pattern = "^websocket$"),
        ("Sec-WebSocket-Version" = String, Header, pattern = "^13$"),
        ("Sec-WebSocket-Key" = String, Header, pattern = "^[A-Za-z0-9+/]{21}[AQgw]==$"),
    ),
    responses(
        (status = 101, description = "A WebSocket carrying every run's events as JSON text messages"),
        refusals::BadRequest,
        refusals::Unauthorized,
    ),
)]
pub(crate) async fn websocket(
    State(app): State<AppState>,
    Query(query): Query<FeedQuery>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|rejection| {
        ApiError::BadRequest(format!(
            "this endpoint speaks WebSocket: {}",
            rejection.body_text()
        ))
    })?;
    if !headers
        .get("sec-websocket-key")
        .is_some_and(|key| is_handshake_key(key.as_bytes()))
    {
        return Err(ApiError::BadRequest(
            "Sec-WebSocket-Key must be 16 bytes in base64 (RFC 6455, 4.1)".to_owned(),
        ));
    }
    let cursor = query
        .after
        .as_deref()
        .map(Cursor::parse)
        .transpose()?
        .unwrap_or_default();
    let run = query.checked_run()?;
    Ok(upgrade
        .on_upgrade(move |socket| relay(socket, follow(app, cursor, run)))
        .into_response())
}

/// Whether `key` is 16 bytes in base64: 22 characters, the last of them
/// carrying 2 bits, then `==`.
fn is_handshake_key(key: &[u8]) -> bool {
    let base64 = |byte: &u8| byte.is_ascii_alphanumeric() || matches!(byte, b'+' | b'/');
    key.len() == 24
        && key[..21].iter().all(base64)
        && matches!(key[21], b'A' | b'Q' | b'g' | b'w')
        && &key[22..] == b"=="
}

async fn relay(mut socket: WebSocket, mut items: mpsc::Receiver<Item>) {
    while let Some(item) = items.recv().await {
        let mut data = item.data;
        data["id"] = Value::from(item.id);
        if socket
            .send(Message::Text(data.to_string().into()))
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Starts following the feed from `cursor`; the items come on the
/// receiver until the client goes away.
/// Every event after `cursor` (of `run`, or of every run), in feed order,
/// and those appended later, for as long as the receiver is held.
pub(crate) fn follow(app: AppState, cursor: Cursor, run: Option<String>) -> mpsc::Receiver<Item> {
    let (sender, receiver) = mpsc::channel(256);
    let changes = app.engine.store().changes();
    let follower = Follower {
        app,
        cursor,
        run,
        valids: HashMap::new(),
        sender,
    };
    tokio::spawn(follower.run(changes));
    receiver
}

struct Follower {
    app: AppState,
    cursor: Cursor,
    run: Option<String>,
    /// Checked workflows of the runs seen, to name tasks by id.
    valids: HashMap<String, Option<Arc<Valid>>>,
    sender: mpsc::Sender<Item>,
}

impl Follower {
    /// Reads the feed after the cursor whenever the store says a batch
    /// past it was appended, by this process or another.
    async fn run(mut self, mut changes: broadcast::Receiver<Change>) {
        loop {
            loop {
                // The batch the cursor is inside comes again, its seen
                // events skipped.
                let after = match self.cursor.seen {
                    Some(_) => self.cursor.position.saturating_sub(1),
                    None => self.cursor.position,
                };
                let Ok(batches) = self.app.engine.store().feed(after, PAGE).await else {
                    break;
                };
                let full = batches.len() == PAGE;
                for batch in batches {
                    if !self.send(batch).await {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            loop {
                tokio::select! {
                    changed = changes.recv() => match changed {
                        Ok(Change::Appended { position, .. }) if position >= self.cursor.position => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = self.sender.closed() => return,
                }
            }
        }
    }

    /// Sends a batch's events past the cursor; false once the client left.
    async fn send(&mut self, batch: FeedBatch) -> bool {
        let skip = match self.cursor.seen {
            Some(seen) if batch.position == self.cursor.position => seen as usize,
            _ => 0,
        };
        self.cursor = Cursor {
            position: batch.position,
            seen: None,
        };
        if self.run.as_ref().is_some_and(|run| *run != batch.run_id) {
            return true;
        }
        let valid = self.valid(&batch.run_id).await;
        for (index, event) in batch.events.into_iter().enumerate().skip(skip) {
            let run_event = RunEvent {
                seq: batch.first_seq + index as u64,
                event,
            };
            let mut data = match &valid {
                Some(valid) => run_event.json(valid),
                None => serde_json::to_value(&run_event.event).unwrap_or_default(),
            };
            data["run_id"] = Value::from(batch.run_id.as_str());
            let item = Item {
                id: format!("{}:{index}", batch.position),
                kind: data["type"].as_str().unwrap_or("event").to_owned(),
                data,
            };
            if self.sender.send(item).await.is_err() {
                return false;
            }
        }
        true
    }

    async fn valid(&mut self, run: &str) -> Option<Arc<Valid>> {
        if self.valids.len() > 4096 {
            self.valids.clear();
        }
        if let Some(valid) = self.valids.get(run) {
            return valid.clone();
        }
        let checked = match self.app.engine.store().run(run).await {
            Ok(record) => checking::workflow(Arc::unwrap_or_clone(record.workflow))
                .await
                .ok()
                .and_then(Result::ok)
                .map(Arc::new),
            Err(_) => None,
        };
        self.valids.insert(run.to_owned(), checked.clone());
        checked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_id_reads_back_as_the_place_after_it() {
        assert_eq!(
            Cursor::parse("12:3").unwrap(),
            Cursor {
                position: 12,
                seen: Some(4)
            }
        );
        assert!(Cursor::parse("12").is_err());
        assert!(Cursor::parse("a:1").is_err());
    }

    #[test]
    fn a_handshake_key_is_sixteen_bytes_in_base64() {
        assert!(is_handshake_key(b"dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            &b"dGhlIHNhbXBsZSBub25jZR=="[..],
            b"dGhlIHNhbXBsZSBub25jZQ=",
            b"dGhlIHNhbXBsZSBub25jZ!==",
            b"",
        ] {
            assert!(!is_handshake_key(bad), "{}", String::from_utf8_lossy(bad));
        }
    }
}

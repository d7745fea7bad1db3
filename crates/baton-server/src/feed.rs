//! `/api/v1/events`: every run's events in one stream, in the order the
//! store appended them, as Server-Sent Events or over a WebSocket. Each
//! event's id is `POSITION:INDEX` (its batch's place in the store's feed,
//! and its place in the batch), so a client that reconnects with the last
//! id it saw (`Last-Event-ID`, or `?after=`) misses nothing and sees
//! nothing twice.

use std::convert::Infallible;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::AppState;
use crate::following::{Cursor, Item, follow};
use crate::problem::{ApiError, Query};
use crate::refusals;
use crate::relayed::follow_relayed;

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
    let run = query.checked_run()?;
    let mut items = match app.redis_events() {
        Some(settings) => follow_relayed(app, settings, cursor, run),
        None => follow(app, cursor, run),
    };
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

#[cfg(test)]
mod tests {
    use super::*;

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

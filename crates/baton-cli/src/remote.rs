//! `baton --server URL ...`: the commands that read and steer runs ask a
//! `baton serve` instead of the local store, and print the same.

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A server and the key to show it.
#[derive(Clone)]
pub(crate) struct Remote {
    server: String,
    base: String,
    key: Option<String>,
    client: reqwest::Client,
}

/// A refusal from the server: its status and what its problem says.
#[derive(Debug)]
pub(crate) struct Refused {
    pub(crate) status: u16,
    pub(crate) detail: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for Refused {}

impl Remote {
    pub(crate) fn new(server: &str, key: Option<String>) -> anyhow::Result<Remote> {
        let server = server.trim_end_matches('/').to_owned();
        Ok(Remote {
            base: format!("{server}/api/v1"),
            server,
            key,
            client: baton_engine::http_client()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
        })
    }

    /// The server's base URL.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }

    pub(crate) fn key(&self) -> Option<&str> {
        self.key.as_deref()
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_with(method, path, &[])
    }

    fn request_with(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, String)],
    ) -> reqwest::RequestBuilder {
        let address = format!("{}{path}", self.base);
        let request = match reqwest::Url::parse_with_params(&address, query) {
            Ok(url) => self.client.request(method, url),
            Err(_) => self.client.request(method, address),
        };
        match &self.key {
            Some(key) => request.bearer_auth(key),
            None => request,
        }
    }

    /// Sends a request; a problem answer is an `Err(Refused)` inside.
    async fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Result<reqwest::Response, Refused>> {
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach {}", self.base))?;
        if response.status().is_success() {
            return Ok(Ok(response));
        }
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or_default();
        let mut detail = body["detail"]
            .as_str()
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        // A workflow's problems are listed, each where it is.
        for problem in body["problems"].as_array().into_iter().flatten() {
            let at = &problem["location"];
            let place = match (at["line"].as_u64(), at["column"].as_u64()) {
                (Some(line), Some(column)) => format!("{line}:{column}: "),
                _ => String::new(),
            };
            detail.push_str(&format!(
                "\n  {place}{}: {}",
                problem["code"].as_str().unwrap_or("problem"),
                problem["message"].as_str().unwrap_or_default()
            ));
        }
        Ok(Err(Refused { status, detail }))
    }

    /// Whether the server is ready (`/readyz` answers 200), with what it
    /// said; an error when it cannot be reached within `within`.
    pub(crate) async fn ready(&self, within: Duration) -> anyhow::Result<(bool, String)> {
        let response = self
            .client
            .get(format!("{}/readyz", self.server))
            .timeout(within)
            .send()
            .await
            .with_context(|| format!("{} does not answer", self.server))?;
        let ready = response.status().is_success();
        let body: Value = response.json().await.unwrap_or_default();
        let said = body["detail"]
            .as_str()
            .or(body["status"].as_str())
            .unwrap_or_default()
            .to_owned();
        Ok((ready, said))
    }

    /// `GET path?query` as `T`; any refusal is an error.
    pub(crate) async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let response = self
            .send(self.request_with(reqwest::Method::GET, path, query))
            .await??;
        Ok(response.json().await?)
    }

    /// `GET path?query` as text; `None` when the server refuses with 404.
    pub(crate) async fn text(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<Option<String>> {
        match self
            .send(self.request_with(reqwest::Method::GET, path, query))
            .await?
        {
            Ok(response) => Ok(Some(response.text().await?)),
            Err(refused) if refused.status == 404 => Ok(None),
            Err(refused) => Err(refused.into()),
        }
    }

    /// `POST path` with a JSON body, the answer read as `T`; the refusal,
    /// if any, for the caller to word.
    pub(crate) async fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Result<T, Refused>> {
        Ok(
            match self
                .send(self.request(reqwest::Method::POST, path).json(body))
                .await?
            {
                Ok(response) => Ok(response.json().await?),
                Err(refused) => Err(refused),
            },
        )
    }

    /// `GET path?query` as Server-Sent Events, resuming after `last` (the
    /// id of the last event seen).
    pub(crate) async fn events(
        &self,
        path: &str,
        query: &[(&str, String)],
        last: Option<&str>,
    ) -> anyhow::Result<Result<Events, Refused>> {
        let mut request = self
            .request_with(reqwest::Method::GET, path, query)
            .header(reqwest::header::ACCEPT, "text/event-stream");
        if let Some(last) = last {
            request = request.header("last-event-id", last);
        }
        Ok(self.send(request).await?.map(|response| Events {
            response,
            buffer: Vec::new(),
        }))
    }
}

/// One server-sent event.
#[derive(Debug, PartialEq)]
pub(crate) struct Message {
    pub(crate) id: Option<String>,
    pub(crate) kind: String,
    pub(crate) data: String,
}

impl Message {
    /// The event a block of `field: value` lines says, if it says one
    /// (a comment, such as a keep-alive, does not).
    fn parse(block: &str) -> Option<Message> {
        let mut message = Message {
            id: None,
            kind: "message".to_owned(),
            data: String::new(),
        };
        let mut data = false;
        for line in block.lines() {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => message.id = Some(value.to_owned()),
                "event" => value.clone_into(&mut message.kind),
                "data" => {
                    if data {
                        message.data.push('\n');
                    }
                    message.data.push_str(value);
                    data = true;
                }
                _ => {}
            }
        }
        data.then_some(message)
    }
}

/// An open stream of server-sent events.
pub(crate) struct Events {
    response: reqwest::Response,
    buffer: Vec<u8>,
}

impl Events {
    /// The next event; `None` once the server ends the stream.
    pub(crate) async fn next(&mut self) -> anyhow::Result<Option<Message>> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                if let Some(message) = Message::parse(&String::from_utf8_lossy(&block)) {
                    return Ok(Some(message));
                }
                continue;
            }
            match self.response.chunk().await? {
                Some(bytes) => self.buffer.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_block_reads_back_with_its_lines_joined() {
        assert_eq!(
            Message::parse("id: 7\nevent: log\ndata: a\ndata: b\n"),
            Some(Message {
                id: Some("7".to_owned()),
                kind: "log".to_owned(),
                data: "a\nb".to_owned(),
            })
        );
        assert_eq!(Message::parse(":keep-alive\n"), None);
    }
}

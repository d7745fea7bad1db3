//! `baton --server URL ...`: the commands that read and steer runs ask a
//! `baton serve` instead of the local store, and print the same.

use std::time::Duration;

use anyhow::Context;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A server and the key to show it.
pub(crate) struct Remote {
    base: String,
    key: Option<String>,
    client: reqwest::Client,
    runtime: tokio::runtime::Runtime,
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
        let base = format!("{}/api/v1", server.trim_end_matches('/'));
        Ok(Remote {
            base,
            key,
            client: baton_engine::http_client()
                .connect_timeout(Duration::from_secs(10))
                .build()?,
            runtime: crate::runtime()?,
        })
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
    fn send(
        &self,
        request: reqwest::RequestBuilder,
    ) -> anyhow::Result<Result<reqwest::Response, Refused>> {
        let response = self
            .runtime
            .block_on(request.send())
            .with_context(|| format!("cannot reach {}", self.base))?;
        if response.status().is_success() {
            return Ok(Ok(response));
        }
        let status = response.status().as_u16();
        let body: Value = self.runtime.block_on(response.json()).unwrap_or_default();
        let detail = body["detail"]
            .as_str()
            .map_or_else(|| format!("the server answered {status}"), str::to_owned);
        Ok(Err(Refused { status, detail }))
    }

    /// `GET path?query` as `T`; any refusal is an error.
    pub(crate) fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let response = self.send(self.request_with(reqwest::Method::GET, path, query))??;
        Ok(self.runtime.block_on(response.json())?)
    }

    /// `GET path?query` as text; `None` when the server refuses with 404.
    pub(crate) fn text(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<Option<String>> {
        match self.send(self.request_with(reqwest::Method::GET, path, query))? {
            Ok(response) => Ok(Some(self.runtime.block_on(response.text())?)),
            Err(refused) if refused.status == 404 => Ok(None),
            Err(refused) => Err(refused.into()),
        }
    }

    /// `POST path` with a JSON body; the refusal, if any, for the caller to
    /// word.
    pub(crate) fn post(&self, path: &str, body: &Value) -> anyhow::Result<Result<Value, Refused>> {
        Ok(
            match self.send(self.request(reqwest::Method::POST, path).json(body))? {
                Ok(response) => Ok(self.runtime.block_on(response.json()).unwrap_or_default()),
                Err(refused) => Err(refused),
            },
        )
    }
}

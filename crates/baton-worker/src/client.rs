//! The worker protocol's calls, over HTTP: each answers the server's
//! message or says why not, telling apart what is worth retrying (the
//! server is away or overloaded) from what is not (a bad key, an unknown
//! worker, a stale lease).

use std::time::Duration;

use baton_engine::remote::protocol::{
    LogStream, Poll, Polled, Registered, Registration, TOKEN_HEADER,
};
use serde::de::DeserializeOwned;

/// Why a call did not get its answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No answer: the server is down, restarting or unreachable.
    #[error("cannot reach the server at {url}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server does not know this worker (it restarted, or dropped a
    /// worker it had not heard from): register again.
    #[error("the server does not know this worker: {0}")]
    UnknownWorker(String),
    /// The lease is no longer this worker's (409): drop it.
    #[error("{0}")]
    Stale(String),
    /// Any other refusal, with the server's status and problem detail.
    #[error("the server refused ({status}): {detail}")]
    Refused { status: u16, detail: String },
}

impl CallError {
    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        match self {
            CallError::Unreachable { .. } => true,
            CallError::Refused { status, .. } => *status >= 500 || *status == 429,
            CallError::UnknownWorker(_) | CallError::Stale(_) => false,
        }
    }
}

/// A server, as one worker calls it.
#[derive(Clone)]
pub(crate) struct Client {
    base: String,
    key: Option<String>,
    http: reqwest::Client,
}

/// Who the worker is to the server once registered.
#[derive(Clone, Debug)]
pub(crate) struct Session {
    pub(crate) id: String,
    pub(crate) token: String,
    /// How often the server wants to hear from it.
    pub(crate) heartbeat: Duration,
}

impl Client {
    pub(crate) fn new(server: &str, key: Option<String>) -> Result<Client, reqwest::Error> {
        Ok(Client {
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            key,
            http: baton_engine::http_client()
                .connect_timeout(Duration::from_secs(5))
                .pool_max_idle_per_host(4)
                .build()?,
        })
    }

    fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        session: Option<&Session>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(key) = &self.key {
            request = request.bearer_auth(key);
        }
        if let Some(session) = session {
            request = request.header(TOKEN_HEADER, &session.token);
        }
        request
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let response = request
            .send()
            .await
            .map_err(|source| CallError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = response.status().as_u16();
        if response.status().is_success() {
            return Ok(response);
        }
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let detail = body["detail"]
            .as_str()
            .unwrap_or("no detail given")
            .to_owned();
        Err(match status {
            404 => CallError::UnknownWorker(detail),
            409 => CallError::Stale(detail),
            _ => CallError::Refused { status, detail },
        })
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<T, CallError> {
        let url = self.base.clone();
        self.send(request)
            .await?
            .json()
            .await
            .map_err(|source| CallError::Unreachable { url, source })
    }

    pub(crate) async fn register(
        &self,
        registration: &Registration,
    ) -> Result<Registered, CallError> {
        let request = self
            .request(reqwest::Method::POST, "/workers", None)
            .json(registration);
        self.json(request).await
    }

    /// A poll; `wait` bounds the server's wait for work, and the request
    /// allows a little more.
    pub(crate) async fn poll(&self, session: &Session, poll: &Poll) -> Result<Polled, CallError> {
        let request = self
            .request(
                reqwest::Method::POST,
                &format!("/workers/{}/poll", session.id),
                Some(session),
            )
            .timeout(Duration::from_millis(poll.wait_ms) + Duration::from_secs(10))
            .json(poll);
        self.json(request).await
    }

    pub(crate) async fn upload_log(
        &self,
        session: &Session,
        lease: &str,
        stream: LogStream,
        bytes: Vec<u8>,
    ) -> Result<(), CallError> {
        let stream = match stream {
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        };
        let request = self
            .request(
                reqwest::Method::POST,
                &format!(
                    "/workers/{}/leases/{lease}/logs?stream={stream}",
                    session.id
                ),
                Some(session),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.send(request).await.map(drop)
    }

    /// A file a lease is given, by its digest.
    pub(crate) async fn download(
        &self,
        session: &Session,
        lease: &str,
        sha256: &str,
    ) -> Result<Vec<u8>, CallError> {
        let request = self.request(
            reqwest::Method::GET,
            &format!("/workers/{}/leases/{lease}/files/{sha256}", session.id),
            Some(session),
        );
        let url = self.base.clone();
        let response = self.send(request).await?;
        response
            .bytes()
            .await
            .map(|bytes| bytes.to_vec())
            .map_err(|source| CallError::Unreachable { url, source })
    }

    /// A file a lease produced, by its digest.
    pub(crate) async fn upload(
        &self,
        session: &Session,
        lease: &str,
        sha256: &str,
        bytes: Vec<u8>,
    ) -> Result<(), CallError> {
        let request = self
            .request(
                reqwest::Method::PUT,
                &format!("/workers/{}/leases/{lease}/files/{sha256}", session.id),
                Some(session),
            )
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        self.send(request).await.map(drop)
    }

    pub(crate) async fn drain(&self, session: &Session) -> Result<(), CallError> {
        let request = self.request(
            reqwest::Method::POST,
            &format!("/workers/{}/drain", session.id),
            Some(session),
        );
        self.send(request).await.map(drop)
    }

    pub(crate) async fn deregister(&self, session: &Session) -> Result<(), CallError> {
        let request = self.request(
            reqwest::Method::DELETE,
            &format!("/workers/{}", session.id),
            Some(session),
        );
        self.send(request).await.map(drop)
    }
}

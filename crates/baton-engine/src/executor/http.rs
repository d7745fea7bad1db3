//! The `http` kind: one request; the response's status, headers and body
//! (parsed as JSON when it is JSON) become the task's output.

use std::sync::Arc;

use async_trait::async_trait;
use baton_core::run::{Failure, FailureKind, HttpBody, HttpCall, Work};
use baton_core::spec::Method;
use serde_json::{Map, Value, json};

use super::job::{Attempt, Executor, Kill, Outcome, bounded, too_large};
use crate::breaker::Breakers;

/// Runs `http` tasks with one shared client.
#[derive(Clone)]
pub(crate) struct Http {
    pub(crate) client: reqwest::Client,
    pub(crate) breakers: Arc<Breakers>,
    /// Bytes of a response body read at most.
    pub(crate) max_output: u64,
    /// Link-local and metadata addresses may be asked.
    pub(crate) allow_link_local: bool,
}

#[async_trait]
impl Executor for Http {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let Work::Http(request) = &attempt.resolved.work else {
            return Outcome::Failed(Failure::new(
                FailureKind::Error,
                "only `http` tasks are HTTP calls",
            ));
        };
        let traceparent = attempt.context.traceparent();
        bounded(call(self, request, &traceparent), attempt.timeout, kill).await
    }
}

/// Makes the request; it carries the attempt's `traceparent` unless the
/// task sets one of its own.
async fn call(http: &Http, call: &HttpCall, traceparent: &str) -> Outcome {
    let method = match call.method {
        Method::Get => reqwest::Method::GET,
        Method::Post => reqwest::Method::POST,
        Method::Put => reqwest::Method::PUT,
        Method::Patch => reqwest::Method::PATCH,
        Method::Delete => reqwest::Method::DELETE,
        Method::Head => reqwest::Method::HEAD,
        Method::Options => reqwest::Method::OPTIONS,
    };
    if !http.allow_link_local
        && let Some(why) = crate::net_guard::refused(&call.url)
    {
        return Outcome::Failed(Failure::new(
            FailureKind::Error,
            format!("request to {} refused: {why}", call.url),
        ));
    }
    let pass = match http.breakers.let_through(&call.url) {
        Ok(pass) => pass,
        Err(failure) => return Outcome::Failed(failure),
    };
    let mut request = http.client.request(method, &call.url);
    if !call
        .headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("traceparent"))
    {
        request = request.header("traceparent", traceparent);
    }
    for (name, value) in &call.headers {
        request = request.header(name, value);
    }
    request = match &call.body {
        HttpBody::Empty => request,
        HttpBody::Json(body) => request.json(body),
        HttpBody::Text(body) => request.body(body.clone()),
    };
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Outcome::Failed(error_failure(&call.url, &error)),
    };
    let status = response.status().as_u16();
    pass.answered(status);
    let mut headers = Map::new();
    for (name, value) in response.headers() {
        if let Ok(value) = value.to_str() {
            headers
                .entry(name.as_str().to_owned())
                .or_insert_with(|| Value::from(value));
        }
    }
    let bytes = match body(response, http.max_output).await {
        Ok(bytes) => bytes,
        Err(failure) => return Outcome::Failed(failure),
    };
    let mut output = json!({ "status": status, "headers": headers });
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(body) => output["json"] = body,
        Err(_) if !bytes.is_empty() => {
            output["body"] = Value::from(String::from_utf8_lossy(&bytes).into_owned());
        }
        Err(_) => {}
    }
    if call.accepts(status) {
        Outcome::Succeeded(Some(output))
    } else {
        Outcome::Failed(Failure::new(
            FailureKind::Http { status },
            format!("{} answered HTTP {status}", call.url),
        ))
    }
}

/// The response body, refused as soon as it passes `max_output` (a
/// declared length over it is refused before reading).
pub(super) async fn body(
    mut response: reqwest::Response,
    max_output: u64,
) -> Result<Vec<u8>, Failure> {
    let url = response.url().to_string();
    let too_large = || too_large(&format!("the response body of {url}"), max_output);
    if response
        .content_length()
        .is_some_and(|length| length > max_output)
    {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|error| error_failure(&url, &error))?
    {
        if (bytes.len() + chunk.len()) as u64 > max_output {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

pub(super) fn error_failure(url: &str, error: &reqwest::Error) -> Failure {
    let mut message = format!("request to {url} failed: {error}");
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    Failure::new(FailureKind::Error, message)
}

//! `agent` tasks served by a configured OpenAI-compatible chat endpoint
//! (`[agents.CAPABILITY]`), so a laptop run needs no worker: the prompt and
//! the input become the user's message, the reply becomes the output, and
//! the tokens it took (and their cost) go into the run's usage totals.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_core::run::{AgentCall, Failure, FailureKind, Work};
use serde_json::{Value, json};

use super::endpoints::{Endpoint, Endpoints};
use super::http::{body, error_failure};
use super::job::{Attempt, Executor, Kill, Outcome, bounded};
use crate::breaker::{BreakerState, Breakers};
use crate::config::AgentProvider;
use crate::registry::{AgentHealth, AgentKind, AgentStatus};

/// The capabilities this engine serves, each by its endpoint.
#[derive(Clone)]
pub(crate) struct Agents {
    client: reqwest::Client,
    endpoints: Arc<Endpoints>,
    breakers: Arc<Breakers>,
    /// Bytes of a reply read at most.
    max_output: u64,
    /// Endpoints at link-local and metadata addresses may be called.
    allow_link_local: bool,
    /// Calls in flight and ended, by capability, since this engine began.
    tallies: Arc<Mutex<BTreeMap<String, Tally>>>,
}

impl Agents {
    /// Whether `work` is an agent call a configured endpoint serves here
    /// (rather than a remote worker).
    pub(crate) fn serves(&self, work: &Work) -> bool {
        matches!(work, Work::Agent(call) if self.endpoints.serves(&call.capability))
    }

    /// The endpoints, to register more and check their health.
    pub(crate) fn endpoints(&self) -> &Arc<Endpoints> {
        &self.endpoints
    }

    /// `(max_output, allow_link_local)`: a reply's size at most, and whether
    /// endpoints at link-local and metadata addresses may be called.
    pub(crate) fn new(
        client: reqwest::Client,
        providers: &BTreeMap<String, AgentProvider>,
        breakers: Arc<Breakers>,
        (max_output, allow_link_local): (u64, bool),
    ) -> Agents {
        Agents {
            endpoints: Arc::new(Endpoints::configured(providers, client.clone())),
            client,
            breakers,
            max_output,
            allow_link_local,
            tallies: Arc::default(),
        }
    }
}

/// One capability's calls, as the agent registry shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    in_flight: u32,
    succeeded: u64,
    failed: u64,
}

/// A call counted in flight until it is dropped, then as succeeded if
/// [`Counted::end`] said so and as failed otherwise (timed out, stopped).
struct Counted<'a> {
    tallies: &'a Mutex<BTreeMap<String, Tally>>,
    capability: &'a str,
    succeeded: bool,
}

impl<'a> Counted<'a> {
    fn start(tallies: &'a Mutex<BTreeMap<String, Tally>>, capability: &'a str) -> Counted<'a> {
        tally(tallies, capability, |tally| tally.in_flight += 1);
        Counted {
            tallies,
            capability,
            succeeded: false,
        }
    }

    fn end(mut self, succeeded: bool) {
        self.succeeded = succeeded;
    }
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        let succeeded = self.succeeded;
        tally(self.tallies, self.capability, |tally| {
            tally.in_flight = tally.in_flight.saturating_sub(1);
            if succeeded {
                tally.succeeded += 1;
            } else {
                tally.failed += 1;
            }
        });
    }
}

fn tally(
    tallies: &Mutex<BTreeMap<String, Tally>>,
    capability: &str,
    change: impl FnOnce(&mut Tally),
) {
    let mut tallies = tallies
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    change(tallies.entry(capability.to_owned()).or_default());
}

#[async_trait]
impl Executor for Agents {
    async fn execute(&self, attempt: Attempt, kill: Kill) -> Outcome {
        let Work::Agent(call) = &attempt.resolved.work else {
            return Outcome::Failed(error("only `agent` tasks ask agents"));
        };
        let Some(endpoint) = self.endpoints.get(&call.capability) else {
            return Outcome::Failed(error(format!(
                "nothing serves agent capability `{}` here",
                call.capability
            )));
        };
        let counted = Counted::start(&self.tallies, &call.capability);
        let asked = async {
            let _turn = endpoint.limits.enter().await;
            self.ask(&endpoint, call).await
        };
        let outcome = bounded(asked, attempt.timeout, kill).await;
        counted.end(matches!(outcome, Outcome::Succeeded(_)));
        outcome
    }
}

impl Agents {
    /// What serves each capability here, how it fares, and its breaker.
    pub(crate) fn registry(&self) -> Vec<AgentStatus> {
        let tallies = self
            .tallies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        self.endpoints
            .all()
            .into_iter()
            .map(|(capability, endpoint)| {
                let (provider, url) = (&endpoint.provider, &endpoint.url);
                let tally = tallies.get(&capability).copied().unwrap_or_default();
                let breaker = self.breakers.state_of(url);
                AgentStatus {
                    id: format!("chat:{capability}"),
                    kind: AgentKind::ChatEndpoint,
                    capabilities: vec![capability.clone()],
                    name: capability,
                    labels: BTreeMap::new(),
                    endpoint: provider.base_url.clone(),
                    model: Some(provider.model.clone()),
                    concurrency: provider.concurrency,
                    last_heartbeat_ms_ago: None,
                    status: match (breaker, endpoint.healthy()) {
                        (BreakerState::Closed { .. }, true) => AgentHealth::Healthy,
                        _ => AgentHealth::Unhealthy,
                    },
                    breaker,
                    breaker_changes: self.breakers.changes_of(url),
                    in_flight: tally.in_flight,
                    succeeded: tally.succeeded,
                    failed: tally.failed,
                }
            })
            .collect()
    }
}

impl Agents {
    async fn ask(&self, endpoint: &Endpoint, call: &AgentCall) -> Outcome {
        let (provider, url) = (&endpoint.provider, &endpoint.url);
        if !self.allow_link_local
            && let Some(why) = crate::net_guard::refused(url)
        {
            return Outcome::Failed(error(format!("the call to {url} was refused: {why}")));
        }
        let mut request = self.client.post(url).json(&request_body(provider, call));
        // A key missing here is no fault of the host: checked before its
        // breaker lets the call through.
        if let Some(variable) = &provider.api_key_env {
            match std::env::var(variable) {
                Ok(key) => request = request.bearer_auth(key),
                Err(_) => {
                    return Outcome::Failed(error(format!(
                        "the API key of agent capability `{}` is read from ${variable}, which is not set",
                        call.capability
                    )));
                }
            }
        }
        let pass = match self.breakers.let_through(url) {
            Ok(pass) => pass,
            Err(failure) => return Outcome::Failed(failure),
        };
        let response = match request.send().await {
            Ok(response) => response,
            Err(failure) => return Outcome::Failed(error_failure(url, &failure)),
        };
        let status = response.status().as_u16();
        pass.answered(status);
        let bytes = match body(response, self.max_output).await {
            Ok(bytes) => bytes,
            Err(failure) => return Outcome::Failed(failure),
        };
        if !(200..300).contains(&status) {
            let said = String::from_utf8_lossy(&bytes[..bytes.len().min(500)]).into_owned();
            return Outcome::Failed(Failure::new(
                FailureKind::Http { status },
                format!("{url} answered HTTP {status}: {said}"),
            ));
        }
        match output(provider, call, &bytes) {
            Ok(output) => Outcome::Succeeded(Some(output)),
            Err(message) => Outcome::Failed(error(format!("{url}: {message}"))),
        }
    }
}

/// The chat request: the prompt, then the input as JSON, as one user
/// message; with a schema, the reply is asked for as JSON that follows it.
fn request_body(provider: &AgentProvider, call: &AgentCall) -> Value {
    let mut content = call.prompt.clone().unwrap_or_default();
    if let Some(input) = &call.input {
        if !content.is_empty() {
            content.push_str("\n\n");
        }
        content.push_str("Input (JSON):\n");
        content.push_str(&input.to_string());
    }
    let mut body = json!({
        "model": provider.model,
        "messages": [{"role": "user", "content": content}],
    });
    if let Some(schema) = &call.schema {
        body["response_format"] = json!({
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema, "strict": true},
        });
    }
    body
}

/// The task's output from the endpoint's answer: `{"reply": ...}` (the
/// reply read as JSON when a schema was given) and, under the reserved
/// `baton` key, the tokens used and what they cost.
fn output(provider: &AgentProvider, call: &AgentCall, bytes: &[u8]) -> Result<Value, String> {
    let answer: Value = serde_json::from_slice(bytes)
        .map_err(|error| format!("the answer is not JSON: {error}"))?;
    let text = answer["choices"][0]["message"]["content"]
        .as_str()
        .ok_or("the answer has no `choices[0].message.content`")?;
    let reply = match &call.schema {
        Some(_) => serde_json::from_str(unfenced(text))
            .map_err(|error| format!("the reply is not the JSON the schema asks for: {error}"))?,
        None => Value::from(text),
    };
    let usage = &answer["usage"];
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
    let tokens = usage["total_tokens"]
        .as_u64()
        .unwrap_or(prompt + completion);
    let cost = (prompt as f64 * provider.prompt_cost_per_million
        + completion as f64 * provider.completion_cost_per_million)
        / 1_000_000.0;
    Ok(json!({
        "reply": reply,
        "model": answer["model"].as_str().unwrap_or(&provider.model),
        "baton": {"tokens": tokens, "cost": cost},
    }))
}

/// A reply without the Markdown code fence some models put around JSON.
fn unfenced(text: &str) -> &str {
    let text = text.trim();
    let Some(inner) = text.strip_prefix("```") else {
        return text;
    };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

fn error(message: impl Into<String>) -> Failure {
    Failure::new(FailureKind::Error, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> AgentProvider {
        AgentProvider {
            base_url: "http://127.0.0.1:1/v1".to_owned(),
            model: "m".to_owned(),
            prompt_cost_per_million: 2.0,
            completion_cost_per_million: 8.0,
            ..AgentProvider::default()
        }
    }

    fn call(schema: Option<Value>) -> AgentCall {
        AgentCall {
            capability: "summarize".to_owned(),
            prompt: Some("Summarize.".to_owned()),
            input: Some(json!({"text": "long"})),
            schema,
        }
    }

    #[test]
    fn the_prompt_and_input_are_one_message_and_a_schema_asks_for_json() {
        let body = request_body(&provider(), &call(Some(json!({"type": "object"}))));
        assert_eq!(
            body["messages"][0]["content"],
            "Summarize.\n\nInput (JSON):\n{\"text\":\"long\"}"
        );
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["type"],
            "object"
        );
        assert!(
            request_body(&provider(), &call(None))
                .get("response_format")
                .is_none()
        );
    }

    #[test]
    fn the_reply_and_its_usage_become_the_output() {
        let answer = json!({
            "model": "m-1",
            "choices": [{"message": {"role": "assistant", "content": "```json\n{\"ok\": true}\n```"}}],
            "usage": {"prompt_tokens": 1000, "completion_tokens": 500, "total_tokens": 1500},
        });
        let bytes = answer.to_string().into_bytes();
        let output = output(&provider(), &call(Some(json!({}))), &bytes).unwrap();
        assert_eq!(output["reply"], json!({"ok": true}));
        assert_eq!(output["baton"]["tokens"], 1500);
        assert_eq!(output["baton"]["cost"], 0.006);
        let text = output_text(&bytes);
        assert_eq!(text["reply"], "```json\n{\"ok\": true}\n```");
        let missing = super::output(&provider(), &call(None), b"{\"choices\": []}");
        assert!(missing.unwrap_err().contains("choices[0].message.content"));
    }

    fn output_text(bytes: &[u8]) -> Value {
        output(&provider(), &call(None), bytes).unwrap()
    }
}

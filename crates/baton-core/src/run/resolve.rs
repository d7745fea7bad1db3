//! A task ready to hand to a runner: every template evaluated, nothing left
//! that depends on the run's state.

use crate::spec::{Method, StatusMatch};

use super::templates::ShellScript;

/// One attempt (or compensation) of a task, resolved.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Resolved {
    /// The task's `env`, rendered.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub work: Work,
    /// Where the work goes when it is not run here: a remote worker offering
    /// a capability (an `agent` task's, or a task's `runs_on`).
    pub route: Option<Route>,
}

/// The workers that may run an attempt: those offering `capability` and
/// carrying every one of `labels` (rendered).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Route {
    pub capability: String,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// Queued work is taken round-robin across keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<String>,
    /// The task's priority: higher is leased first among a key's queued work.
    #[serde(default)]
    pub priority: i32,
}

/// What a runner does.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Work {
    /// `sh -c script`, with the script's templated values as variables.
    Shell(ShellScript),
    Command(Vec<String>),
    Http(Box<HttpCall>),
    Noop,
    /// An in-process handler, by the name it was registered under.
    Handler(String),
    /// A question for people; the run waits for their decision instead of
    /// running anything.
    Approval {
        prompt: String,
        choices: Vec<String>,
    },
    /// A child run of another workflow.
    Workflow(Box<ChildRun>),
    /// A question for whatever serves an agent capability.
    Agent(Box<AgentCall>),
    /// One tool call on a Model Context Protocol server.
    Mcp(Box<McpCall>),
}

/// An `mcp` task's call, its arguments rendered.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct McpCall {
    pub server: crate::spec::McpServer,
    pub tool: String,
    pub arguments: serde_json::Map<String, serde_json::Value>,
}

/// An `agent` task's request, rendered.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct AgentCall {
    pub capability: String,
    pub prompt: Option<String>,
    pub input: Option<serde_json::Value>,
    /// The JSON Schema the reply must follow, if any.
    pub schema: Option<serde_json::Value>,
}

/// A sub-workflow task's child run: the workflow and its inputs, rendered
/// over the parent's context.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChildRun {
    pub workflow: ChildWorkflow,
    pub inputs: serde_json::Map<String, serde_json::Value>,
}

/// Which workflow a child run runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum ChildWorkflow {
    Inline(std::sync::Arc<crate::spec::Workflow>),
    /// `name@version` (or `name` for the newest), found by the engine.
    Reference(String),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HttpCall {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: HttpBody,
    /// Accepted statuses; any 2xx when empty.
    pub expect: Vec<StatusMatch>,
}

impl HttpCall {
    pub fn accepts(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            return (200..300).contains(&status);
        }
        self.expect.iter().any(|accepted| match *accepted {
            StatusMatch::Exact(exact) => exact == status,
            StatusMatch::Class(class) => status / 100 == u16::from(class),
        })
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum HttpBody {
    Empty,
    Json(serde_json::Value),
    Text(String),
}

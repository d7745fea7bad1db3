//! What a task does (its kind) and the structured modifiers that need more
//! than one value: fan-out, loops, quality gates, swarms, hooks.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};
use serde_json::Value;

use crate::duration::Duration;
use crate::spec::{Expression, Template, Workflow, unique};

/// The one thing a task does. Each variant is the key that selects it in a
/// spec, so a task has exactly one kind by construction.
#[derive(Clone, Debug, PartialEq)]
pub enum TaskKind {
    /// A shell string run with `sh -c`.
    Run(Template),
    /// An argv run without a shell.
    Command(Vec<Template>),
    Http(Box<HttpRequest>),
    /// Work sent to a remote worker by capability.
    Agent(Box<AgentTask>),
    /// A human decision.
    Approval(Box<Approval>),
    /// A child run of another workflow.
    Workflow(Box<SubWorkflow>),
    /// A join point that does nothing.
    Noop,
    /// A function registered in-process by a program that embeds the engine.
    Handler(String),
    /// A task defined by a reusable template, with parameters.
    Uses(Box<UsesTemplate>),
    /// One tool call on a Model Context Protocol server.
    Mcp(Box<McpTask>),
}

impl TaskKind {
    /// Whether an attempt of this kind counts against the run's
    /// `concurrency` and the engine's slots. A no-op ends as it starts
    /// (holding a slot would only make a wave of join points wait and
    /// commit one slot's worth at a time); an approval only waits.
    pub fn takes_slot(&self) -> bool {
        !matches!(self, TaskKind::Noop | TaskKind::Approval(_))
    }

    /// The spec key of this kind, e.g. `run` or `approval`.
    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Run(_) => "run",
            TaskKind::Command(_) => "command",
            TaskKind::Http(_) => "http",
            TaskKind::Agent(_) => "agent",
            TaskKind::Approval(_) => "approval",
            TaskKind::Workflow(_) => "workflow",
            TaskKind::Noop => "noop",
            TaskKind::Handler(_) => "handler",
            TaskKind::Uses(_) => "uses",
            TaskKind::Mcp(_) => "mcp",
        }
    }
}

/// The spec keys that select a task's kind.
pub const KIND_KEYS: [&str; 10] = [
    "run", "command", "http", "agent", "approval", "workflow", "noop", "handler", "uses", "mcp",
];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    #[default]
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
}

/// An HTTP call; the response status, headers and JSON body are its output.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpRequest {
    #[serde(default)]
    pub method: Method,
    pub url: Template,
    #[serde(
        default,
        deserialize_with = "unique::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub headers: BTreeMap<String, Template>,
    /// A JSON body; its strings are templates.
    #[serde(
        default,
        deserialize_with = "unique::some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub json: Option<Value>,
    /// A raw body template, for non-JSON payloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Template>,
    /// Accepted statuses, exact (`201`) or by class (`"2xx"`); any 2xx when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expect: Vec<StatusMatch>,
}

/// An accepted HTTP status: exact, or a class such as `2xx`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusMatch {
    Exact(u16),
    Class(u8),
}

impl Serialize for StatusMatch {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            StatusMatch::Exact(status) => serializer.serialize_u16(*status),
            StatusMatch::Class(class) => serializer.collect_str(&format_args!("{class}xx")),
        }
    }
}

impl<'de> Deserialize<'de> for StatusMatch {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<StatusMatch, D::Error> {
        let invalid = |shown: &dyn std::fmt::Display| {
            de::Error::custom(format!(
                "invalid HTTP status `{shown}`: use a status from 100 to 599 or a class like `2xx`"
            ))
        };
        match unique::value(deserializer)? {
            Value::Number(number) => match number.as_u64() {
                Some(status @ 100..=599) => Ok(StatusMatch::Exact(status as u16)),
                _ => Err(invalid(&number)),
            },
            Value::String(text) => match text.strip_suffix("xx").map(str::parse::<u8>) {
                Some(Ok(class @ 1..=5)) => Ok(StatusMatch::Class(class)),
                _ => match text.parse::<u16>() {
                    Ok(status @ 100..=599) => Ok(StatusMatch::Exact(status)),
                    _ => Err(invalid(&text)),
                },
            },
            other => Err(invalid(&other)),
        }
    }
}

impl JsonSchema for StatusMatch {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "StatusMatch".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "oneOf": [
                { "type": "integer", "minimum": 100, "maximum": 599 },
                { "type": "string", "pattern": "^([1-5]xx|[1-5][0-9][0-9])$" }
            ]
        })
    }
}

/// Work for whatever serves `capability`: a configured chat endpoint, or
/// a remote worker that offers it (and carries every one of `labels`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentTask {
    pub capability: String,
    /// Labels the serving worker must carry; values are templates over the
    /// run (`region: "{{ inputs.region }}"`).
    #[serde(
        default,
        deserialize_with = "unique::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, Template>,
    /// Queued work is taken round-robin across these keys (a template,
    /// such as `"{{ inputs.customer }}"`), so one key's backlog does not
    /// hold up another's; `[workers.rates]` may limit each key's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Template>,
    /// Input handed to the agent; its strings are templates.
    #[serde(
        default,
        deserialize_with = "unique::some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub input: Option<Value>,
    /// A JSON Schema the reply must follow: the reply is then read as JSON
    /// (and the task fails if it is not).
    #[serde(
        default,
        deserialize_with = "unique::some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub schema: Option<Value>,
}

/// Whether `name` can name a capability: 1 to 128 letters, digits, `_`,
/// `-` and `.` (`summarize`, `gpu.build`). Specs, worker registrations
/// and agent endpoints are held to the same rule, so what a task asks for
/// is something a worker can offer.
pub fn is_capability(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Where a `run`, `command` or `noop` task runs instead of in the process
/// that drives its run: on a remote worker that offers `capability` and
/// carries every one of `labels`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunsOn {
    pub capability: String,
    /// Values are templates over the run (`region: "{{ inputs.region }}"`),
    /// so a run picks its workers when it starts.
    #[serde(
        default,
        deserialize_with = "unique::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, Template>,
    /// Queued work is taken round-robin across these keys (a template,
    /// such as `"{{ inputs.customer }}"`), so one key's backlog does not
    /// hold up another's; `[workers.rates]` may limit each key's rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fairness_key: Option<Template>,
}

/// One tool call on a Model Context Protocol server: its structured result
/// (or its text) is the output, and a tool error fails the attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct McpTask {
    pub server: McpServer,
    /// The tool's name.
    pub tool: String,
    /// The tool's arguments; their strings are templates.
    #[serde(
        default,
        deserialize_with = "unique::some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub arguments: Option<Value>,
}

/// Where the MCP server is: a program started for the call and spoken to
/// on its stdin and stdout, or a Streamable HTTP endpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    untagged,
    deny_unknown_fields,
    expecting = "an MCP server is `{command: [program, args...]}` or `{url: \"https://...\"}`"
)]
pub enum McpServer {
    /// `{command: [program, args...]}`, started in the task's directory.
    Command { command: Vec<String> },
    /// `{url: "https://..."}`.
    Url { url: String },
}

/// A decision by a person; its output is `{"choice": ..., "by": ..., "comment": ...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub prompt: Template,
    #[serde(default = "Approval::default_choices")]
    pub choices: Vec<String>,
    /// How long to wait before taking `default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

impl Approval {
    fn default_choices() -> Vec<String> {
        vec!["approve".to_owned(), "reject".to_owned()]
    }
}

/// A child workflow: by reference (`name@version`) or written inline.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubWorkflow {
    /// `name@version` from the workflow directory or the server's registry.
    #[serde(default, rename = "ref", skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Workflow>,
    /// The child's inputs; strings are templates over the parent's context.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inputs: BTreeMap<String, Value>,
}

impl<'de> Deserialize<'de> for SubWorkflow {
    /// `workflow: name@3` is shorthand for `workflow: {ref: name@3}`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SubWorkflow, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            #[serde(default, rename = "ref")]
            reference: Option<String>,
            #[serde(default)]
            inline: Option<Workflow>,
            #[serde(default)]
            inputs: BTreeMap<String, Value>,
        }

        let value = unique::value(deserializer)?;
        if let Value::String(reference) = value {
            return Ok(SubWorkflow {
                reference: Some(reference),
                inline: None,
                inputs: BTreeMap::new(),
            });
        }
        let long: Long = serde_json::from_value(value).map_err(de::Error::custom)?;
        match (&long.reference, &long.inline) {
            (Some(_), Some(_)) => Err(de::Error::custom(
                "a sub-workflow has either `ref` or `inline`, not both",
            )),
            (None, None) => Err(de::Error::custom(
                "a sub-workflow needs `ref: name@version` or an `inline` workflow",
            )),
            _ => Ok(SubWorkflow {
                reference: long.reference,
                inline: long.inline,
                inputs: long.inputs,
            }),
        }
    }
}

/// A task built from a reusable template: `uses: name@version` with `with:`.
#[derive(Clone, Debug, PartialEq)]
pub struct UsesTemplate {
    pub reference: String,
    pub with: BTreeMap<String, Value>,
}

/// A side action with no task of its own: compensation and hooks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Action {
    Run(Template),
    Command(Vec<Template>),
    Http(Box<HttpRequest>),
}

/// Runs the task once per item of a list: `foreach: "{{ tasks.ls.output.files }}"`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Foreach {
    /// A template that renders to a JSON list.
    pub items: Template,
    /// Children in flight at once; the run's limit when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
}

impl<'de> Deserialize<'de> for Foreach {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Foreach, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            items: Template,
            #[serde(default)]
            concurrency: Option<u32>,
        }

        let value = unique::value(deserializer)?;
        if let Value::String(items) = value {
            return Ok(Foreach {
                items: Template::new(items),
                concurrency: None,
            });
        }
        let long: Long = serde_json::from_value(value).map_err(de::Error::custom)?;
        Ok(Foreach {
            items: long.items,
            concurrency: long.concurrency,
        })
    }
}

/// A feedback loop: run again until `until` holds, at most `max` times.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Repeat {
    /// An expression over `output` (this iteration) and `previous`.
    pub until: Expression,
    pub max: u32,
}

/// A quality gate: an expression over `output` that must hold.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Check {
    pub expr: Expression,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

impl<'de> Deserialize<'de> for Check {
    /// A bare string is shorthand for `{expr: ...}`.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Check, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Long {
            expr: Expression,
            #[serde(default)]
            message: Option<String>,
        }

        let value = unique::value(deserializer)?;
        if let Value::String(expr) = value {
            return Ok(Check {
                expr: Expression::new(expr),
                message: None,
            });
        }
        let long: Long = serde_json::from_value(value).map_err(de::Error::custom)?;
        Ok(Check {
            expr: long.expr,
            message: long.message,
        })
    }
}

/// Several copies or variants of a task run side by side, their outputs
/// reduced to one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Swarm {
    /// Identical copies; ignored when `variants` is given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// One copy per entry, each seeing its entry as `variant`.
    #[serde(
        default,
        deserialize_with = "unique::values",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub variants: Vec<Value>,
    pub reduce: Reduce,
}

/// How a swarm's outputs become the task's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Reduce {
    /// The output most copies agree on; a tie fails the task.
    Majority,
    /// The first copy to succeed wins; the others are cancelled.
    FirstSuccess,
    /// Every copy must succeed; the output is the list of outputs.
    All,
    /// At least `k` copies must agree.
    Quorum(u32),
    /// A template over `outputs` renders the result.
    Template(Template),
}

/// Actions fired around a run and its tasks; each receives the event as JSON.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_run: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_run: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub before_task: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_task: Vec<Action>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on_failure: Vec<Action>,
}

impl Hooks {
    /// Every hook action with the name of the event it fires on.
    pub fn actions(&self) -> impl Iterator<Item = (&'static str, usize, &Action)> {
        [
            ("before_run", &self.before_run),
            ("after_run", &self.after_run),
            ("before_task", &self.before_task),
            ("after_task", &self.after_task),
            ("on_failure", &self.on_failure),
        ]
        .into_iter()
        .flat_map(|(event, actions)| {
            actions
                .iter()
                .enumerate()
                .map(move |(index, action)| (event, index, action))
        })
    }
}

/// The JSON type of a workflow input.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    #[default]
    String,
    Integer,
    Number,
    Boolean,
    Array,
    Object,
}

impl InputType {
    pub fn name(self) -> &'static str {
        match self {
            InputType::String => "string",
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::Array => "array",
            InputType::Object => "object",
        }
    }

    pub fn accepts(self, value: &Value) -> bool {
        match self {
            InputType::String => value.is_string(),
            InputType::Integer => value.is_i64() || value.is_u64(),
            InputType::Number => value.is_number(),
            InputType::Boolean => value.is_boolean(),
            InputType::Array => value.is_array(),
            InputType::Object => value.is_object(),
        }
    }
}

/// A declared workflow input; one without a default is required.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(default, rename = "type")]
    pub kind: InputType,
    #[serde(
        default,
        deserialize_with = "unique::some_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

unique::plain_items!(InputSpec);

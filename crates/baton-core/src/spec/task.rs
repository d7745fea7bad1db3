//! A task, and the flat document form it takes in YAML and JSON.
//!
//! In a document the kind is one key among the modifiers (`run: ...` next to
//! `needs: ...`); in Rust it is the [`TaskKind`] enum, so a task with no kind
//! or two kinds cannot exist once loaded. [`TaskDoc`] is the document form and
//! the only place the two meet.

use std::collections::BTreeMap;

use compact_str::CompactString;
use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};
use serde_json::Value;

use crate::duration::Duration;
use crate::problem::{Code, Path, Problem};
use crate::spec::{
    Action, AgentTask, Approval, CachePolicy, Check, Expression, Foreach, Hooks, HttpRequest,
    KIND_KEYS, McpTask, Need, NeedCondition, Needs, Repeat, RetryPolicy, RunsOn, SubWorkflow,
    Swarm, TaskKind, Template, Timeout, UsesTemplate, policy::cache_field, unique,
};

/// One node of the DAG: what it does, what it waits for, and how it runs.
///
/// What every task has is here; the modifiers most tasks never set live
/// behind one pointer, absent when none is set, so a workflow of a million
/// plain tasks holds a million small values rather than large ones.
#[derive(Clone, Debug)]
pub struct Task {
    /// Short ids (up to 24 bytes) live inline: a big spec's ids and needs
    /// cost no allocation each.
    pub id: CompactString,
    pub kind: TaskKind,
    /// Tasks that must finish before this one starts.
    pub needs: Vec<CompactString>,
    /// Higher runs first among ready tasks.
    pub priority: i32,
    modifiers: Option<Box<Modifiers>>,
}

/// How a task runs, beyond what it does and waits for; every field is
/// optional in a spec.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Modifiers {
    pub description: Option<String>,
    /// The needs this task waits on for something other than success, by
    /// id (each one of `needs`); the rest must succeed.
    pub need_conditions: BTreeMap<CompactString, NeedCondition>,
    /// Skip the task unless this holds.
    pub when: Option<Expression>,
    pub retry: Option<Box<RetryPolicy>>,
    pub timeout: Option<Timeout>,
    pub env: BTreeMap<String, Template>,
    pub cwd: Option<Template>,
    /// Files (paths or globs) the task produces for its dependants.
    pub artifacts: Vec<String>,
    pub cache: Option<Box<CachePolicy>>,
    /// Undo action for sagas, run in reverse order when the run compensates.
    pub compensate: Option<Box<Action>>,
    pub foreach: Option<Box<Foreach>>,
    pub repeat: Option<Box<Repeat>>,
    pub check: Vec<Check>,
    pub swarm: Option<Box<Swarm>>,
    /// Tasks sharing a key share its concurrency limit.
    pub concurrency_key: Option<Template>,
    /// Expected duration, for the critical path; 1s when absent.
    pub estimate: Option<Duration>,
    /// A task to run when this one (a sub-workflow) fails.
    pub escalate: Option<String>,
    pub hooks: Option<Box<Hooks>>,
    /// Values for `{{ params.NAME }}` in the task's templates, each itself
    /// a template over the run; a `uses:` template's `with:` becomes these.
    pub params: BTreeMap<String, Value>,
    /// The run ends as this task does: succeeded when it succeeds, even
    /// after failures it judged acceptable, and failed when it fails (a
    /// veto). Every other task is upstream of it.
    pub verdict: bool,
    /// A remote worker runs it, not the process driving the run.
    pub runs_on: Option<Box<RunsOn>>,
}

impl Modifiers {
    /// None set: what a task without modifiers reads.
    const NONE: Modifiers = Modifiers {
        description: None,
        need_conditions: BTreeMap::new(),
        when: None,
        retry: None,
        timeout: None,
        env: BTreeMap::new(),
        cwd: None,
        artifacts: Vec::new(),
        cache: None,
        compensate: None,
        foreach: None,
        repeat: None,
        check: Vec::new(),
        swarm: None,
        concurrency_key: None,
        estimate: None,
        escalate: None,
        hooks: None,
        params: BTreeMap::new(),
        verdict: false,
        runs_on: None,
    };
}

static NO_MODIFIERS: Modifiers = Modifiers::NONE;

impl Task {
    /// A task of `kind` with no modifiers.
    pub fn new(id: impl Into<CompactString>, kind: TaskKind) -> Task {
        Task {
            id: id.into(),
            kind,
            needs: Vec::new(),
            priority: 0,
            modifiers: None,
        }
    }

    /// Whether an attempt counts against the run's `concurrency` and the
    /// engine's slots: as its kind says, and always when a worker runs it
    /// (even a no-op then waits for a worker and a round trip).
    pub fn takes_slot(&self) -> bool {
        self.kind.takes_slot() || self.modifiers().runs_on.is_some()
    }

    /// What `need` (one of its needs) must end as for this task to run.
    pub fn need_condition(&self, need: &str) -> NeedCondition {
        self.modifiers()
            .need_conditions
            .get(need)
            .copied()
            .unwrap_or_default()
    }

    /// Its modifiers (all unset for most tasks).
    pub fn modifiers(&self) -> &Modifiers {
        self.modifiers.as_deref().unwrap_or(&NO_MODIFIERS)
    }

    /// Its modifiers, to set some.
    pub fn modifiers_mut(&mut self) -> &mut Modifiers {
        self.modifiers.get_or_insert_default()
    }

    /// Lets go of modifiers that were made but all left unset.
    pub(crate) fn drop_unset_modifiers(&mut self) {
        if self
            .modifiers
            .as_deref()
            .is_some_and(|modifiers| *modifiers == Modifiers::NONE)
        {
            self.modifiers = None;
        }
    }

    /// The task with `modifiers`, kept only if one is set.
    pub fn with_modifiers(mut self, modifiers: Modifiers) -> Task {
        self.modifiers = Some(Box::new(modifiers));
        self.drop_unset_modifiers();
        self
    }
}

/// Tasks are equal when they say the same, however their modifiers are
/// held.
impl PartialEq for Task {
    fn eq(&self, other: &Task) -> bool {
        self.id == other.id
            && self.kind == other.kind
            && self.needs == other.needs
            && self.priority == other.priority
            && self.modifiers() == other.modifiers()
    }
}

/// A task as written in a document: every kind is an optional key.
#[derive(Clone, Debug, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(
    title = "Task",
    description = "A task: exactly one kind key plus modifiers."
)]
pub(crate) struct TaskDoc {
    /// A shell string, run with `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    run: Option<Template>,
    /// An argv, run without a shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    command: Option<Vec<Template>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    http: Option<Box<HttpRequest>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    agent: Option<Box<AgentTask>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    approval: Option<Box<Approval>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    workflow: Option<Box<SubWorkflow>>,
    /// `noop: true`: a join point.
    #[serde(
        default,
        deserialize_with = "noop_field",
        serialize_with = "serialize_noop",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<bool>")]
    noop: Option<()>,
    /// The name of an in-process handler the embedding program registered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    /// `name@version` of a task template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uses: Option<String>,
    /// One tool call on a Model Context Protocol server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mcp: Option<Box<McpTask>>,
    /// Parameters of the `uses` template.
    #[serde(
        default,
        deserialize_with = "unique::some_map",
        skip_serializing_if = "Option::is_none"
    )]
    with: Option<BTreeMap<String, Value>>,

    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    needs: Vec<Need>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    when: Option<Expression>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry: Option<Box<RetryPolicy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout: Option<Timeout>,
    #[serde(
        default,
        deserialize_with = "env_map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    env: BTreeMap<String, Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cwd: Option<Template>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    artifacts: Vec<String>,
    #[serde(
        default,
        deserialize_with = "cache_field::deserialize",
        skip_serializing_if = "Option::is_none"
    )]
    cache: Option<Box<CachePolicy>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    compensate: Option<Box<Action>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    foreach: Option<Box<Foreach>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    repeat: Option<Box<Repeat>>,
    #[serde(
        default,
        deserialize_with = "one_or_many",
        skip_serializing_if = "Vec::is_empty"
    )]
    check: Vec<Check>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    swarm: Option<Box<Swarm>>,
    #[serde(default, skip_serializing_if = "is_zero")]
    priority: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    concurrency_key: Option<Template>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    estimate: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    escalate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hooks: Option<Box<Hooks>>,
    /// Values for `{{ params.NAME }}`, as a `uses` template's `with` sets them.
    #[serde(
        default,
        deserialize_with = "unique::map",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    params: BTreeMap<String, Value>,
    /// The run ends as this task does: an audit step that accepts the
    /// failures before it or vetoes the run.
    #[serde(default, skip_serializing_if = "is_false")]
    verdict: bool,
    /// Run on a remote worker offering this capability and labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    runs_on: Option<Box<RunsOn>>,
}

fn is_false(flag: &bool) -> bool {
    !flag
}

fn is_zero(priority: &i32) -> bool {
    *priority == 0
}

pub(super) fn noop_field<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<()>, D::Error> {
    match unique::value(deserializer)? {
        Value::Null | Value::Bool(true) => Ok(Some(())),
        Value::Object(map) if map.is_empty() => Ok(Some(())),
        _ => Err(de::Error::custom(
            "`noop` takes `true` (or nothing); remove the key for another kind",
        )),
    }
}

fn serialize_noop<S: Serializer>(_: &Option<()>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_bool(true)
}

/// Environment values may be written as numbers or booleans; they are text
/// by the time they reach a process.
pub(super) fn env_map<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, Template>, D::Error> {
    unique::map::<_, BTreeMap<String, Value>>(deserializer)?
        .into_iter()
        .map(|(name, value)| match value {
            Value::String(text) => Ok((name, Template::new(text))),
            Value::Number(number) => Ok((name, Template::new(number.to_string()))),
            Value::Bool(flag) => Ok((name, Template::new(flag.to_string()))),
            other => Err(de::Error::custom(format!(
                "environment variable `{name}` must be text, a number or a boolean, not {}",
                json_type(&other)
            ))),
        })
        .collect()
}

pub(super) fn one_or_many<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<Check>, D::Error> {
    match unique::value(deserializer)? {
        Value::Array(items) => items
            .into_iter()
            .map(|item| serde_json::from_value(item).map_err(de::Error::custom))
            .collect(),
        single => serde_json::from_value(single)
            .map(|check| vec![check])
            .map_err(de::Error::custom),
    }
}

/// The JSON type name of a value, for messages.
pub(crate) fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

impl TaskDoc {
    /// The task, or the problems that stop the document from being one.
    pub(crate) fn into_task(self, id: String) -> Result<Task, Vec<Problem>> {
        let mut problems = Vec::new();
        let with = self.with;
        if with.is_some() && self.uses.is_none() {
            problems.push(
                Problem::new(
                    Code::InvalidSetting,
                    Path::task(&id).key("with"),
                    "`with` gives parameters to a `uses` template, and this task has no `uses`",
                )
                .at_key(),
            );
        }
        let mut kinds = self
            .run
            .map(TaskKind::Run)
            .into_iter()
            .chain(self.command.map(TaskKind::Command))
            .chain(self.http.map(TaskKind::Http))
            .chain(self.agent.map(TaskKind::Agent))
            .chain(self.approval.map(TaskKind::Approval))
            .chain(self.workflow.map(TaskKind::Workflow))
            .chain(self.noop.map(|()| TaskKind::Noop))
            .chain(self.handler.map(TaskKind::Handler))
            .chain(self.mcp.map(TaskKind::Mcp))
            .chain(self.uses.map(|reference| {
                TaskKind::Uses(Box::new(UsesTemplate {
                    reference,
                    with: with.unwrap_or_default(),
                }))
            }));
        let kind = match (kinds.next(), kinds.next()) {
            (Some(kind), None) if problems.is_empty() => kind,
            (Some(_), None) => return Err(problems),
            (first, second) => {
                let names: Vec<&str> = first
                    .iter()
                    .chain(&second)
                    .map(TaskKind::name)
                    .chain(kinds.map(|kind| kind.name()))
                    .collect();
                problems.extend(kind_count_problem(&id, &names));
                return Err(problems);
            }
        };
        let needs = Needs::from_items(self.needs);
        let task = Task {
            id: id.into(),
            kind,
            needs: needs.ids,
            priority: self.priority,
            modifiers: None,
        };
        Ok(task.with_modifiers(Modifiers {
            description: self.description,
            need_conditions: needs.conditions,
            when: self.when,
            retry: self.retry,
            timeout: self.timeout,
            env: self.env,
            cwd: self.cwd,
            artifacts: self.artifacts,
            cache: self.cache,
            compensate: self.compensate,
            foreach: self.foreach,
            repeat: self.repeat,
            check: self.check,
            swarm: self.swarm,
            concurrency_key: self.concurrency_key,
            estimate: self.estimate,
            escalate: self.escalate,
            hooks: self.hooks,
            params: self.params,
            verdict: self.verdict,
            runs_on: self.runs_on,
        }))
    }

    pub(crate) fn from_task(task: &Task) -> TaskDoc {
        let modifiers = task.modifiers();
        let mut doc = TaskDoc {
            needs: Needs::items(&task.needs, &modifiers.need_conditions),
            priority: task.priority,
            description: modifiers.description.clone(),
            when: modifiers.when.clone(),
            retry: modifiers.retry.clone(),
            timeout: modifiers.timeout,
            env: modifiers.env.clone(),
            cwd: modifiers.cwd.clone(),
            artifacts: modifiers.artifacts.clone(),
            cache: modifiers.cache.clone(),
            compensate: modifiers.compensate.clone(),
            foreach: modifiers.foreach.clone(),
            repeat: modifiers.repeat.clone(),
            check: modifiers.check.clone(),
            swarm: modifiers.swarm.clone(),
            concurrency_key: modifiers.concurrency_key.clone(),
            estimate: modifiers.estimate,
            escalate: modifiers.escalate.clone(),
            hooks: modifiers.hooks.clone(),
            params: modifiers.params.clone(),
            verdict: modifiers.verdict,
            runs_on: modifiers.runs_on.clone(),
            ..TaskDoc::default()
        };
        match &task.kind {
            TaskKind::Run(script) => doc.run = Some(script.clone()),
            TaskKind::Command(argv) => doc.command = Some(argv.clone()),
            TaskKind::Http(http) => doc.http = Some(http.clone()),
            TaskKind::Agent(agent) => doc.agent = Some(agent.clone()),
            TaskKind::Approval(approval) => doc.approval = Some(approval.clone()),
            TaskKind::Workflow(child) => doc.workflow = Some(child.clone()),
            TaskKind::Noop => doc.noop = Some(()),
            TaskKind::Handler(name) => doc.handler = Some(name.clone()),
            TaskKind::Mcp(mcp) => doc.mcp = Some(mcp.clone()),
            TaskKind::Uses(template) => {
                doc.uses = Some(template.reference.clone());
                if !template.with.is_empty() {
                    doc.with = Some(template.with.clone());
                }
            }
        }
        doc
    }
}

/// The problem with a task that has `kinds` (by key name), if it has not
/// exactly one.
pub(crate) fn kind_count_problem(id: &str, kinds: &[&str]) -> Option<Problem> {
    match kinds {
        [_] => None,
        [] => Some(
            Problem::new(
                Code::MissingKind,
                Path::task(id),
                format!("task `{id}` has no kind"),
            )
            .at_key()
            .with_help(format!("give it one of: {}", KIND_KEYS.join(", "))),
        ),
        [first, second, ..] => Some(
            Problem::new(
                Code::MultipleKinds,
                Path::task(id).key(*second),
                format!(
                    "task `{id}` has {} kinds ({}); a task does exactly one thing",
                    kinds.len(),
                    kinds.join(", ")
                ),
            )
            .at_key()
            .with_help(format!(
                "keep `{first}` and move `{second}` into a task of its own"
            )),
        ),
    }
}

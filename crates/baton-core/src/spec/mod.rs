//! The workflow spec as typed Rust values: one model behind YAML, JSON and
//! the Rust builder.
//!
//! Values that need parsing to be checked (templates, expressions) are kept
//! as text here and checked by [`crate::check()`], so every problem in a spec
//! is reported at once instead of deserialization stopping at the first.

mod kinds;
mod need;
mod policy;
mod read;
mod schedule;
mod task;
mod unique;

use std::borrow::Cow;
use std::fmt;

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use kinds::{
    Action, AgentTask, Approval, Check, Foreach, Hooks, HttpRequest, InputSpec, InputType,
    KIND_KEYS, McpServer, McpTask, Method, Reduce, Repeat, RunsOn, StatusMatch, SubWorkflow, Swarm,
    TaskKind, UsesTemplate, is_capability,
};
pub use need::NeedCondition;
pub(crate) use need::{Need, Needs};
pub use policy::{
    Backoff, CachePolicy, FailurePolicy, OnTimeout, ParseRetryOnError, RetryOn, RetryPolicy,
    Timeout,
};
pub(crate) use read::task_map;
pub use schedule::{CatchUp, Overlap, Schedule};
pub use task::{Modifiers, Task};
pub(crate) use task::{TaskDoc, json_type, kind_count_problem};
pub(crate) use unique::UniqueValue;

use crate::duration::Duration;

/// A minijinja template such as `"{{ tasks.build.output.sha }}"`; text
/// without `{{`, `{%` or `{#` is a literal.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Template(String);

/// A minijinja expression such as `tasks.approve.output.choice == 'publish'`,
/// used by `when`, `check` and `repeat.until`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Expression(String);

macro_rules! text_newtype {
    ($name:ident, $description:literal) => {
        impl $name {
            pub fn new(text: impl Into<String>) -> $name {
                $name(text.into())
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                $name(text.to_owned())
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> $name {
                $name(text)
            }
        }

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                stringify!($name).into()
            }

            fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
                schemars::json_schema!({ "type": "string", "description": $description })
            }
        }
    };
}

text_newtype!(
    Template,
    "A minijinja template over `inputs` and `tasks.NAME.output`."
);
text_newtype!(
    Expression,
    "A minijinja expression over `inputs` and `tasks.NAME.output`."
);

impl Template {
    /// Whether the text has template syntax at all; literals skip the
    /// template engine entirely, which keeps large specs cheap to check.
    pub fn is_literal(&self) -> bool {
        is_literal(&self.0)
    }
}

/// Whether `text` has no template syntax.
pub(crate) fn is_literal(text: &str) -> bool {
    !(text.contains("{{") || text.contains("{%") || text.contains("{#"))
}

/// Settings every task inherits unless it sets its own.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
}

impl Defaults {
    fn is_empty(&self) -> bool {
        self.retry.is_none() && self.timeout.is_none()
    }
}

/// A workflow: named, versioned, with inputs and a DAG of tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(
        default,
        deserialize_with = "unique::map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub inputs: IndexMap<String, InputSpec>,
    #[serde(default, skip_serializing_if = "Defaults::is_empty")]
    pub defaults: Defaults,
    /// Tasks of one run in flight at once; unbounded when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// Tasks sharing a `concurrency_key` in flight at once, by key; a key
    /// not listed here runs one task at a time.
    #[serde(
        default,
        deserialize_with = "unique::map",
        skip_serializing_if = "IndexMap::is_empty"
    )]
    pub concurrency_limits: IndexMap<String, u32>,
    /// A limit on the whole run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub on_failure: FailurePolicy,
    /// Tasks that dynamic spawning may add to one run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spawn: Option<u32>,
    /// How deep spawned tasks may spawn in turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spawn_depth: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hooks: Option<Hooks>,
    /// When a registered workflow's runs start on their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Schedule>,
    /// Tasks by id, in the order written.
    #[serde(default, with = "task_map")]
    #[schemars(with = "IndexMap<String, TaskDoc>")]
    pub tasks: Vec<Task>,
}

fn is_default<T: Default + PartialEq>(value: &T) -> bool {
    *value == T::default()
}

impl Workflow {
    /// A workflow with no tasks; see [`crate::WorkflowBuilder`] to add some.
    pub fn new(name: impl Into<String>) -> Workflow {
        Workflow {
            name: name.into(),
            version: None,
            description: None,
            inputs: IndexMap::new(),
            defaults: Defaults::default(),
            concurrency: None,
            concurrency_limits: IndexMap::new(),
            timeout: None,
            on_failure: FailurePolicy::default(),
            max_spawn: None,
            max_spawn_depth: None,
            hooks: None,
            schedule: None,
            tasks: Vec::new(),
        }
    }

    pub fn task(&self, id: &str) -> Option<&Task> {
        self.tasks.iter().find(|task| task.id == id)
    }

    /// The JSON Schema of the spec format, generated from these types.
    pub fn json_schema() -> serde_json::Value {
        let schema = schemars::generate::SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<Workflow>();
        serde_json::to_value(schema).expect("a schema is plain JSON")
    }
}

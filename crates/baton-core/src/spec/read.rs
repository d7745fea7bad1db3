//! `tasks:` read straight into [`Task`]s, the path every good spec takes.
//!
//! Each task's keys are matched without copying them, each value read by
//! the same function its [`TaskDoc`] field uses, and a task's modifiers are
//! allocated only when it sets one. What this reader refuses, it refuses
//! without saying why: the document is then read again through
//! [`TaskDoc`], field by field, for the problems. The two must accept the
//! same documents (a property test in `load` holds them to it), so every
//! rule here mirrors a serde attribute of [`TaskDoc`].

use std::fmt;

use compact_str::CompactString;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};

use crate::spec::task::{env_map, noop_field, one_or_many};
use crate::spec::{Needs, Task, TaskDoc, TaskKind, UsesTemplate, policy::cache_field, unique};

/// `tasks:` as a mapping from id to task, kept in written order.
pub(crate) mod task_map {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        tasks: &[Task],
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(tasks.len()))?;
        for task in tasks {
            map.serialize_entry(&task.id, &TaskDoc::from_task(task))?;
        }
        map.end()
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Task>, D::Error> {
        deserializer.deserialize_map(TasksVisitor)
    }
}

struct TasksVisitor;

impl<'de> Visitor<'de> for TasksVisitor {
    type Value = Vec<Task>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping from task id to task")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Vec<Task>, A::Error> {
        let mut tasks: Vec<Task> = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(id) = map.next_key::<CompactString>()? {
            tasks.push(map.next_value_seed(TaskSeed(id))?);
        }
        // Checked once all are read: the ids are borrowed, not copied.
        let mut seen = rustc_hash::FxHashSet::default();
        seen.reserve(tasks.len());
        if let Some(task) = tasks.iter().find(|task| !seen.insert(task.id.as_str())) {
            return Err(de::Error::custom(format!(
                "duplicate task id `{}`",
                task.id
            )));
        }
        Ok(tasks)
    }
}

/// The keys of a task, as [`TaskDoc`] names them.
#[derive(Clone, Copy)]
enum Field {
    Run,
    Command,
    Http,
    Agent,
    Approval,
    Workflow,
    Noop,
    Handler,
    Uses,
    With,
    Needs,
    Description,
    When,
    Retry,
    Timeout,
    Env,
    Cwd,
    Artifacts,
    Cache,
    Compensate,
    Foreach,
    Repeat,
    Check,
    Swarm,
    Priority,
    ConcurrencyKey,
    Estimate,
    Escalate,
    Hooks,
    Params,
    Verdict,
    RunsOn,
    Mcp,
}

// Fields seen are bits of a u64.
const _: () = assert!((Field::Mcp as u32) < 64, "more task fields than bits");

impl Field {
    fn named(name: &str) -> Option<Field> {
        Some(match name {
            "run" => Field::Run,
            "command" => Field::Command,
            "http" => Field::Http,
            "agent" => Field::Agent,
            "approval" => Field::Approval,
            "workflow" => Field::Workflow,
            "noop" => Field::Noop,
            "handler" => Field::Handler,
            "uses" => Field::Uses,
            "with" => Field::With,
            "needs" => Field::Needs,
            "description" => Field::Description,
            "when" => Field::When,
            "retry" => Field::Retry,
            "timeout" => Field::Timeout,
            "env" => Field::Env,
            "cwd" => Field::Cwd,
            "artifacts" => Field::Artifacts,
            "cache" => Field::Cache,
            "compensate" => Field::Compensate,
            "foreach" => Field::Foreach,
            "repeat" => Field::Repeat,
            "check" => Field::Check,
            "swarm" => Field::Swarm,
            "priority" => Field::Priority,
            "concurrency_key" => Field::ConcurrencyKey,
            "estimate" => Field::Estimate,
            "escalate" => Field::Escalate,
            "hooks" => Field::Hooks,
            "params" => Field::Params,
            "verdict" => Field::Verdict,
            "runs_on" => Field::RunsOn,
            "mcp" => Field::Mcp,
            _ => return None,
        })
    }
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Field, D::Error> {
        struct FieldVisitor;

        impl Visitor<'_> for FieldVisitor {
            type Value = Field;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a task's key")
            }

            fn visit_str<E: de::Error>(self, name: &str) -> Result<Field, E> {
                Field::named(name).ok_or_else(|| E::custom(format!("unknown field `{name}`")))
            }
        }

        deserializer.deserialize_identifier(FieldVisitor)
    }
}

/// A field read by a function of [`TaskDoc`]'s (`deserialize_with`).
macro_rules! read_with {
    ($seed:ident, $function:path, $value:ty) => {
        struct $seed;

        impl<'de> DeserializeSeed<'de> for $seed {
            type Value = $value;

            fn deserialize<D: Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<$value, D::Error> {
                $function(deserializer)
            }
        }
    };
}

read_with!(NoopSeed, noop_field, Option<()>);
read_with!(EnvSeed, env_map, std::collections::BTreeMap<String, crate::spec::Template>);
read_with!(
    CacheSeed,
    cache_field::deserialize,
    Option<Box<crate::spec::CachePolicy>>
);
read_with!(CheckSeed, one_or_many, Vec<crate::spec::Check>);
read_with!(
    WithSeed,
    unique::some_map,
    Option<std::collections::BTreeMap<String, serde_json::Value>>
);
read_with!(ParamsSeed, unique::map, std::collections::BTreeMap<String, serde_json::Value>);

/// One task, its id already read.
struct TaskSeed(CompactString);

impl<'de> DeserializeSeed<'de> for TaskSeed {
    type Value = Task;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Task, D::Error> {
        deserializer.deserialize_map(TaskVisitor(self.0))
    }
}

struct TaskVisitor(CompactString);

impl<'de> Visitor<'de> for TaskVisitor {
    type Value = Task;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Task, A::Error> {
        let mut seen = 0u64;
        let mut kind: Option<TaskKind> = None;
        let mut kinds = 0;
        let mut uses = None;
        let mut with = None;
        let mut task = Task::new(self.0, TaskKind::Noop);
        while let Some(field) = map.next_key::<Field>()? {
            let bit = 1u64 << field as u32;
            if seen & bit != 0 {
                return Err(de::Error::custom("duplicate field"));
            }
            seen |= bit;
            // A kind key whose value is absent (`run: null`) is no kind,
            // as for TaskDoc's optional fields.
            let mut found = |found: Option<TaskKind>| {
                if let Some(found) = found {
                    kinds += 1;
                    kind = Some(found);
                }
            };
            match field {
                Field::Run => found(map.next_value::<Option<_>>()?.map(TaskKind::Run)),
                Field::Command => found(map.next_value::<Option<_>>()?.map(TaskKind::Command)),
                Field::Http => found(map.next_value::<Option<_>>()?.map(TaskKind::Http)),
                Field::Agent => found(map.next_value::<Option<_>>()?.map(TaskKind::Agent)),
                Field::Approval => found(map.next_value::<Option<_>>()?.map(TaskKind::Approval)),
                Field::Workflow => found(map.next_value::<Option<_>>()?.map(TaskKind::Workflow)),
                Field::Noop => found(map.next_value_seed(NoopSeed)?.map(|()| TaskKind::Noop)),
                Field::Handler => found(map.next_value::<Option<_>>()?.map(TaskKind::Handler)),
                Field::Mcp => found(map.next_value::<Option<_>>()?.map(TaskKind::Mcp)),
                Field::Uses => {
                    uses = map.next_value::<Option<String>>()?;
                    if uses.is_some() {
                        kinds += 1;
                    }
                }
                Field::With => with = map.next_value_seed(WithSeed)?,
                Field::Needs => {
                    let needs: Needs = map.next_value()?;
                    task.needs = needs.ids;
                    if !needs.conditions.is_empty() {
                        task.modifiers_mut().need_conditions = needs.conditions;
                    }
                }
                Field::Priority => task.priority = map.next_value()?,
                Field::Description => task.modifiers_mut().description = map.next_value()?,
                Field::When => task.modifiers_mut().when = map.next_value()?,
                Field::Retry => task.modifiers_mut().retry = map.next_value()?,
                Field::Timeout => task.modifiers_mut().timeout = map.next_value()?,
                Field::Env => task.modifiers_mut().env = map.next_value_seed(EnvSeed)?,
                Field::Cwd => task.modifiers_mut().cwd = map.next_value()?,
                Field::Artifacts => task.modifiers_mut().artifacts = map.next_value()?,
                Field::Cache => task.modifiers_mut().cache = map.next_value_seed(CacheSeed)?,
                Field::Compensate => task.modifiers_mut().compensate = map.next_value()?,
                Field::Foreach => task.modifiers_mut().foreach = map.next_value()?,
                Field::Repeat => task.modifiers_mut().repeat = map.next_value()?,
                Field::Check => task.modifiers_mut().check = map.next_value_seed(CheckSeed)?,
                Field::Swarm => task.modifiers_mut().swarm = map.next_value()?,
                Field::ConcurrencyKey => {
                    task.modifiers_mut().concurrency_key = map.next_value()?;
                }
                Field::Estimate => task.modifiers_mut().estimate = map.next_value()?,
                Field::Escalate => task.modifiers_mut().escalate = map.next_value()?,
                Field::Hooks => task.modifiers_mut().hooks = map.next_value()?,
                Field::Params => task.modifiers_mut().params = map.next_value_seed(ParamsSeed)?,
                Field::Verdict => task.modifiers_mut().verdict = map.next_value()?,
                Field::RunsOn => task.modifiers_mut().runs_on = map.next_value()?,
            }
        }
        if with.is_some() && uses.is_none() {
            return Err(de::Error::custom("`with` without `uses`"));
        }
        if let Some(reference) = uses {
            kind = Some(TaskKind::Uses(Box::new(UsesTemplate {
                reference,
                with: with.unwrap_or_default(),
            })));
        }
        match (kinds, kind) {
            (1, Some(kind)) => task.kind = kind,
            _ => return Err(de::Error::custom("a task does exactly one thing")),
        }
        task.drop_unset_modifiers();
        Ok(task)
    }
}

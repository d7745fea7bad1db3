//! `needs:` items: a task id, which waits for that task to succeed, or
//! `{task, condition}` for an edge that waits for something else (a
//! cleanup that runs whatever happened, a notice sent only on failure).
//!
//! The id alone is the common case and stays the cheap one: a task keeps
//! its needs as ids and holds conditions only for the edges that set one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use compact_str::CompactString;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

/// What a need must end as for the task after it to run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum NeedCondition {
    /// The need succeeded; otherwise the task is skipped, and a failure
    /// above it is passed on as the reason.
    #[default]
    OnSuccess,
    /// The need failed or timed out, or was skipped because something
    /// above it did; otherwise the task is skipped.
    OnFailure,
    /// The need ended, however it ended.
    Always,
}

impl NeedCondition {
    pub fn name(self) -> &'static str {
        match self {
            NeedCondition::OnSuccess => "on_success",
            NeedCondition::OnFailure => "on_failure",
            NeedCondition::Always => "always",
        }
    }
}

/// One item of `needs:` as written.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Need {
    pub(crate) task: CompactString,
    pub(crate) condition: NeedCondition,
}

impl JsonSchema for Need {
    fn schema_name() -> Cow<'static, str> {
        "Need".into()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let condition = generator.subschema_for::<NeedCondition>();
        schemars::json_schema!({
            "oneOf": [
                { "type": "string", "description": "The id of a task that must succeed first." },
                {
                    "type": "object",
                    "description": "A task, and what it must end as for this one to run.",
                    "required": ["task"],
                    "additionalProperties": false,
                    "properties": { "task": { "type": "string" }, "condition": condition }
                }
            ]
        })
    }
}

impl Serialize for Need {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.condition == NeedCondition::OnSuccess {
            return serializer.serialize_str(&self.task);
        }
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("task", &self.task)?;
        map.serialize_entry("condition", &self.condition)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for Need {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Need, D::Error> {
        deserializer.deserialize_any(NeedVisitor)
    }
}

struct NeedVisitor;

impl<'de> Visitor<'de> for NeedVisitor {
    type Value = Need;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a task id, or `{task: ID, condition: on_success|on_failure|always}`")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<Need, E> {
        Ok(Need {
            task: id.into(),
            condition: NeedCondition::OnSuccess,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Need, A::Error> {
        #[derive(Deserialize)]
        #[serde(field_identifier, rename_all = "snake_case")]
        enum Field {
            Task,
            Condition,
        }
        let mut task: Option<CompactString> = None;
        let mut condition: Option<NeedCondition> = None;
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Task if task.is_some() => return Err(de::Error::duplicate_field("task")),
                Field::Task => task = Some(map.next_value()?),
                Field::Condition if condition.is_some() => {
                    return Err(de::Error::duplicate_field("condition"));
                }
                Field::Condition => condition = Some(map.next_value()?),
            }
        }
        Ok(Need {
            task: task.ok_or_else(|| de::Error::missing_field("task"))?,
            condition: condition.unwrap_or_default(),
        })
    }
}

/// A task's `needs:`: the ids in written order, and the conditions of the
/// edges that wait for something other than success.
#[derive(Debug, Default)]
pub(crate) struct Needs {
    pub(crate) ids: Vec<CompactString>,
    pub(crate) conditions: BTreeMap<CompactString, NeedCondition>,
}

impl Needs {
    /// `needs:` as written, from a task's ids and conditions.
    pub(crate) fn items(
        ids: &[CompactString],
        conditions: &BTreeMap<CompactString, NeedCondition>,
    ) -> Vec<Need> {
        ids.iter()
            .map(|id| Need {
                task: id.clone(),
                condition: conditions.get(id).copied().unwrap_or_default(),
            })
            .collect()
    }

    pub(crate) fn from_items(items: Vec<Need>) -> Needs {
        let mut needs = Needs {
            ids: Vec::with_capacity(items.len()),
            conditions: BTreeMap::new(),
        };
        for item in items {
            needs.push(item);
        }
        needs
    }

    fn push(&mut self, need: Need) {
        if need.condition != NeedCondition::OnSuccess {
            self.conditions.insert(need.task.clone(), need.condition);
        }
        self.ids.push(need.task);
    }
}

impl<'de> Deserialize<'de> for Needs {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Needs, D::Error> {
        struct NeedsVisitor;

        impl<'de> Visitor<'de> for NeedsVisitor {
            type Value = Needs;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of task ids")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Needs, A::Error> {
                let mut needs = Needs {
                    ids: Vec::with_capacity(seq.size_hint().unwrap_or(0)),
                    conditions: BTreeMap::new(),
                };
                while let Some(need) = seq.next_element::<Need>()? {
                    needs.push(need);
                }
                Ok(needs)
            }
        }

        deserializer.deserialize_seq(NeedsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(json: &str) -> Result<Needs, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn an_id_waits_for_success_and_a_mapping_names_its_condition() {
        let needs = read(r#"["a", {"task": "b", "condition": "always"}, {"task": "c"}]"#)
            .expect("valid needs");
        assert_eq!(needs.ids, ["a", "b", "c"]);
        assert_eq!(
            needs.conditions.into_iter().collect::<Vec<_>>(),
            [("b".into(), NeedCondition::Always)]
        );
    }

    #[test]
    fn a_mapping_without_a_task_or_with_an_unknown_condition_is_refused() {
        let missing = read(r#"[{"condition": "always"}]"#).expect_err("no task");
        assert!(
            missing.to_string().contains("missing field `task`"),
            "{missing}"
        );
        let unknown = read(r#"[{"task": "a", "condition": "sometimes"}]"#).expect_err("bad");
        assert!(unknown.to_string().contains("on_failure"), "{unknown}");
        let extra = read(r#"[{"task": "a", "if": "x"}]"#).expect_err("unknown key");
        assert!(extra.to_string().contains("unknown field `if`"), "{extra}");
        let number = read("[3]").expect_err("not an id");
        assert!(number.to_string().contains("a task id"), "{number}");
    }

    #[test]
    fn items_written_back_keep_success_needs_as_bare_ids() {
        let needs = read(r#"["a", {"task": "b", "condition": "on_failure"}]"#).expect("valid");
        let items = Needs::items(&needs.ids, &needs.conditions);
        assert_eq!(
            serde_json::to_string(&items).expect("serializes"),
            r#"["a",{"task":"b","condition":"on_failure"}]"#
        );
    }
}

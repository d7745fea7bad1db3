//! Inputs given to a run, checked against the workflow's declarations.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::problem::{Code, Path, Problem};
use crate::spec::{InputType, Workflow};

/// The inputs of a run: given values checked against their declared types,
/// defaults filled in. Values given as text (from `-i key=value`) are read as
/// their declared type. Reports every missing, unknown or ill-typed input.
pub fn resolve_inputs(
    workflow: &Workflow,
    given: &BTreeMap<String, Value>,
) -> Result<Map<String, Value>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut resolved = Map::new();
    for (name, spec) in &workflow.inputs {
        let path = Path::root().key("inputs").key(name.clone());
        match given.get(name) {
            Some(value) => match coerce(spec.kind, value) {
                Some(value) => {
                    resolved.insert(name.clone(), value);
                }
                None => problems.push(Problem::new(
                    Code::InvalidInput,
                    path,
                    format!(
                        "input `{name}` must be of type {}, got {value}",
                        spec.kind.name()
                    ),
                )),
            },
            None => match &spec.default {
                Some(default) => {
                    resolved.insert(name.clone(), default.clone());
                }
                None => problems.push(
                    Problem::new(
                        Code::MissingInput,
                        path,
                        format!("required input `{name}` was not given"),
                    )
                    .with_help(format!("pass it with `-i {name}=VALUE`")),
                ),
            },
        }
    }
    for name in given
        .keys()
        .filter(|name| !workflow.inputs.contains_key(*name))
    {
        problems.push(Problem::new(
            Code::InvalidInput,
            Path::root().key("inputs").key(name.clone()),
            format!(
                "input `{name}` is not declared by workflow `{}`",
                workflow.name
            ),
        ));
    }
    if problems.is_empty() {
        Ok(resolved)
    } else {
        Err(problems)
    }
}

fn coerce(kind: InputType, value: &Value) -> Option<Value> {
    if kind.accepts(value) {
        return Some(value.clone());
    }
    let Value::String(text) = value else {
        return None;
    };
    let parsed: Value = serde_json::from_str(text).ok()?;
    kind.accepts(&parsed).then_some(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::InputSpec;

    fn workflow() -> Workflow {
        let mut workflow = Workflow::new("w");
        workflow.inputs.insert(
            "branch".into(),
            InputSpec {
                kind: InputType::String,
                default: Some("main".into()),
                description: None,
            },
        );
        workflow.inputs.insert(
            "count".into(),
            InputSpec {
                kind: InputType::Integer,
                default: None,
                description: None,
            },
        );
        workflow
    }

    #[test]
    fn text_values_are_read_as_their_declared_type_and_defaults_fill_in() {
        let given = BTreeMap::from([("count".to_owned(), Value::from("3"))]);
        let resolved = resolve_inputs(&workflow(), &given).unwrap();
        assert_eq!(resolved["count"], Value::from(3));
        assert_eq!(resolved["branch"], Value::from("main"));
    }

    #[test]
    fn missing_unknown_and_ill_typed_inputs_are_all_reported() {
        let given = BTreeMap::from([
            ("branch".to_owned(), Value::from(5)),
            ("colour".to_owned(), Value::from("red")),
        ]);
        let codes: Vec<Code> = resolve_inputs(&workflow(), &given)
            .unwrap_err()
            .iter()
            .map(|problem| problem.code)
            .collect();
        assert_eq!(
            codes,
            [Code::InvalidInput, Code::MissingInput, Code::InvalidInput]
        );
    }
}

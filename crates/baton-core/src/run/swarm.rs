//! Swarms: a task run as several copies side by side (`count` identical
//! ones, or one per entry of `variants`), their outputs reduced to the
//! task's one. Ties, too few successes and a missed quorum are outcomes
//! with a message, decided here from the copies' results alone.

use std::collections::BTreeMap;

use minijinja::Value;

use crate::spec::Reduce;

use super::event::{Failure, FailureKind};
use super::state::RunState;
use super::templates::{self, TemplateError};

/// How one copy ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Vote {
    Output(Option<serde_json::Value>),
    Failed(Failure),
    /// Stopped before it ended (another copy won a `first_success`).
    Stopped,
}

/// How a swarm's votes become its task's output: the `reduce` rule, and
/// the task's template context for a `template` rule. Made by the run's
/// state when the attempt starts, so the copies' end can be reduced where
/// they end.
#[derive(Clone, Debug)]
pub struct Reduction {
    rule: Rule,
    context: Value,
    /// Copies in flight at once, if capped.
    limit: Option<usize>,
}

#[derive(Clone, Debug)]
enum Rule {
    Swarm(Reduce),
    /// Every item must succeed; their outputs in item order.
    Items,
}

impl RunState {
    /// How many copies a task runs: 1 for a task without `swarm`.
    pub fn copies(&self, task: u32) -> usize {
        self.task(task)
            .modifiers()
            .swarm
            .as_ref()
            .map_or(1, |swarm| match swarm.variants.len() {
                0 => swarm.count.unwrap_or(1) as usize,
                variants => variants,
            })
    }

    /// The reduction of a swarm or foreach task's attempt; `None` for
    /// other tasks.
    pub fn reduction(&self, task: u32, attempt: u32) -> Option<Reduction> {
        let definition = self.task(task);
        let (rule, limit) = match (
            &definition.modifiers().swarm,
            &definition.modifiers().foreach,
        ) {
            (Some(swarm), _) => (Rule::Swarm(swarm.reduce.clone()), None),
            (None, Some(foreach)) => (
                Rule::Items,
                foreach
                    .concurrency
                    .or(self.concurrency_limit())
                    .map(|limit| limit as usize),
            ),
            (None, None) => return None,
        };
        Some(Reduction {
            rule,
            context: self.context(task, attempt, false),
            limit,
        })
    }

    /// The list a `foreach` task's attempt runs over, rendered from its
    /// `items` (a template that must give a JSON list); `None` for a task
    /// without `foreach`.
    pub fn foreach_items(
        &self,
        task: u32,
        attempt: u32,
    ) -> Result<Option<Vec<serde_json::Value>>, TemplateError> {
        let Some(foreach) = &self.task(task).modifiers().foreach else {
            return Ok(None);
        };
        let context = self.context(task, attempt, false);
        let text = serde_json::Value::String(foreach.items.as_str().to_owned());
        match templates::render_json(&text, &context, "foreach.items")? {
            serde_json::Value::Array(items) => Ok(Some(items)),
            serde_json::Value::String(text) => match serde_json::from_str(&text) {
                Ok(serde_json::Value::Array(items)) => Ok(Some(items)),
                _ => Err(not_a_list(&text)),
            },
            other => Err(not_a_list(&other.to_string())),
        }
    }
}

fn not_a_list(rendered: &str) -> TemplateError {
    let shown: String = rendered.chars().take(80).collect();
    TemplateError {
        what: "foreach.items".to_owned(),
        detail: format!("`{shown}` is not a list to run over"),
    }
}

impl Reduction {
    /// Whether the first copy to succeed decides (the others are stopped).
    pub fn first_success(&self) -> bool {
        matches!(self.rule, Rule::Swarm(Reduce::FirstSuccess))
    }

    /// Copies in flight at once, if the task caps them.
    pub fn limit(&self) -> Option<usize> {
        self.limit
    }

    /// The swarm's output from its copies' votes, `(copy, vote)` in the
    /// order they ended, or why there is none.
    pub fn reduce(&self, votes: &[(usize, Vote)]) -> Result<Option<serde_json::Value>, Failure> {
        let outputs: Vec<(usize, &Option<serde_json::Value>)> = votes
            .iter()
            .filter_map(|(copy, vote)| match vote {
                Vote::Output(output) => Some((*copy, output)),
                _ => None,
            })
            .collect();
        let noun = match self.rule {
            Rule::Swarm(_) => "copy",
            Rule::Items => "item",
        };
        let first_failure = || {
            votes
                .iter()
                .filter(|(_, vote)| matches!(vote, Vote::Failed(_)))
                .min_by_key(|(copy, _)| *copy)
                .and_then(|(copy, vote)| match vote {
                    Vote::Failed(failure) => Some(format!("{noun} {copy} failed: {failure}")),
                    _ => None,
                })
        };
        let reduce = match &self.rule {
            Rule::Items => {
                return match first_failure() {
                    Some(failure) => Err(failed(failure)),
                    None => Ok(Some(serde_json::Value::Array(in_copy_order(outputs)))),
                };
            }
            Rule::Swarm(reduce) => reduce,
        };
        if outputs.is_empty() {
            return Err(failed(
                first_failure().unwrap_or_else(|| "no copy of the swarm succeeded".to_owned()),
            ));
        }
        match reduce {
            Reduce::FirstSuccess => Ok(outputs[0].1.clone()),
            Reduce::All => match first_failure() {
                Some(failure) => Err(failed(failure)),
                None => Ok(Some(serde_json::Value::Array(in_copy_order(outputs)))),
            },
            Reduce::Majority => agreed(&outputs, 1),
            Reduce::Quorum(quorum) => agreed(&outputs, *quorum as usize),
            Reduce::Template(template) => {
                let list = in_copy_order(outputs);
                let context = minijinja::context! {
                    outputs => Value::from(minijinja::value::Serde(&list)),
                    ..self.context.clone()
                };
                let text = templates::render(template.as_str(), &context, "swarm.reduce.template")
                    .map_err(|error| Failure::new(FailureKind::Template, error.to_string()))?;
                Ok(Some(
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
                ))
            }
        }
    }
}

fn in_copy_order(mut outputs: Vec<(usize, &Option<serde_json::Value>)>) -> Vec<serde_json::Value> {
    outputs.sort_by_key(|(copy, _)| *copy);
    outputs
        .into_iter()
        .map(|(_, output)| output.clone().unwrap_or_default())
        .collect()
}

/// The output most copies agree on, if at least `needed` do and no other
/// output has as many votes.
fn agreed(
    outputs: &[(usize, &Option<serde_json::Value>)],
    needed: usize,
) -> Result<Option<serde_json::Value>, Failure> {
    // Keyed by canonical JSON: objects compare whatever their key order.
    let mut tally: BTreeMap<String, (usize, &Option<serde_json::Value>)> = BTreeMap::new();
    for (_, output) in outputs {
        let key = serde_json::to_string(output).unwrap_or_default();
        tally.entry(key).or_insert((0, output)).0 += 1;
    }
    let best = tally.values().map(|(votes, _)| *votes).max().unwrap_or(0);
    let leaders: Vec<_> = tally.values().filter(|(votes, _)| *votes == best).collect();
    if best < needed {
        return Err(failed(format!(
            "no output reached the quorum of {needed}: at most {best} copies agree"
        )));
    }
    match leaders.as_slice() {
        [(_, output)] => Ok((*output).clone()),
        _ => Err(failed(format!(
            "no majority: {} outputs tie with {best} vote(s) each",
            leaders.len()
        ))),
    }
}

fn failed(message: String) -> Failure {
    Failure::new(FailureKind::Error, message)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::run::RunSetup;
    use crate::{Format, check_source};

    fn swarm(reduce: &str) -> Reduction {
        let spec =
            format!("name: s\ntasks:\n  vote: {{run: x, swarm: {{count: 4, reduce: {reduce}}}}}\n");
        let valid = check_source(&spec, Format::Yaml).expect("a valid spec");
        let state = RunState::new(Arc::new(valid), RunSetup::default());
        assert_eq!(state.copies(0), 4);
        state.reduction(0, 1).unwrap()
    }

    fn out(value: serde_json::Value) -> Vote {
        Vote::Output(Some(value))
    }

    fn broke() -> Vote {
        Vote::Failed(Failure::new(FailureKind::Exit { code: 1 }, "exit 1"))
    }

    #[test]
    fn a_majority_takes_the_most_common_output_whatever_its_key_order() {
        let state = swarm("majority");
        let votes = [
            (0, out(json!({"a": 1, "b": 2}))),
            (1, out(json!({"b": 2, "a": 1}))),
            (2, out(json!("other"))),
            (3, broke()),
        ];
        assert_eq!(state.reduce(&votes), Ok(Some(json!({"a": 1, "b": 2}))));
    }

    #[test]
    fn a_tie_and_too_few_agreeing_are_failures_with_their_reason() {
        let tie = [(0, out(json!(1))), (1, out(json!(2)))];
        let error = swarm("majority").reduce(&tie).unwrap_err();
        assert_eq!(
            error.message,
            "no majority: 2 outputs tie with 1 vote(s) each"
        );
        let short = [(0, out(json!(1))), (1, out(json!(1))), (2, out(json!(2)))];
        let error = swarm("{quorum: 3}").reduce(&short).unwrap_err();
        assert_eq!(
            error.message,
            "no output reached the quorum of 3: at most 2 copies agree"
        );
        let none = [(0, broke()), (1, Vote::Stopped)];
        let error = swarm("majority").reduce(&none).unwrap_err();
        assert_eq!(error.message, "copy 0 failed: exit 1");
    }

    #[test]
    fn all_lists_outputs_in_copy_order_and_first_success_takes_the_first_to_end() {
        let votes = [
            (2, out(json!("c"))),
            (0, out(json!("a"))),
            (1, out(json!("b"))),
        ];
        assert_eq!(
            swarm("all").reduce(&votes),
            Ok(Some(json!(["a", "b", "c"])))
        );
        assert_eq!(swarm("first_success").reduce(&votes), Ok(Some(json!("c"))));
        let with_failure = [(0, out(json!("a"))), (1, broke())];
        assert!(swarm("all").reduce(&with_failure).is_err());
    }

    #[test]
    fn a_template_reduces_the_outputs_to_json_or_text() {
        let votes = [(0, out(json!(3))), (1, out(json!(5)))];
        let sum = swarm("{template: '{{ outputs | sum }}'}");
        assert_eq!(sum.reduce(&votes), Ok(Some(json!(8))));
        let text = swarm("{template: 'best of {{ outputs | length }}'}");
        assert_eq!(text.reduce(&votes), Ok(Some(json!("best of 2"))));
    }
}

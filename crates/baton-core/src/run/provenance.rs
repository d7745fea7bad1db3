//! Provenance: what each succeeded task ran, on what, and what it made, as a
//! chain of digests a reader can recompute from the run's record and events.
//!
//! A task's record hashes its resolved spec, its inputs (the output digests
//! of the needs it read, and the run's inputs when it runs in-process), its
//! output and its artifacts, and seals them with the record digests of its
//! parents; the run's root digest seals every record in task order. Editing
//! any recorded output, spec or record changes a digest downstream.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::digest::{Digest, Hasher};
use super::event::Artifact;
use super::resolve::Work;
use super::state::RunState;
use super::templates::TemplateError;

/// The provenance of one succeeded task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Provenance {
    pub task: String,
    pub attempt: u32,
    /// The spec as it ran: every template evaluated.
    pub spec: Digest,
    pub inputs: Digest,
    pub output: Digest,
    pub artifacts: Digest,
    /// Record digests of the needs that succeeded, in `needs` order.
    pub parents: Vec<Digest>,
    /// Seals the fields above.
    pub digest: Digest,
}

impl Provenance {
    /// The digest the fields of this record seal to; differs from `digest`
    /// when the record was altered.
    pub fn seal(&self) -> Digest {
        let mut hasher = Hasher::default();
        hasher
            .text(&self.task)
            .number(u64::from(self.attempt))
            .digest(&self.spec)
            .digest(&self.inputs)
            .digest(&self.output)
            .digest(&self.artifacts)
            .number(self.parents.len() as u64);
        for parent in &self.parents {
            hasher.digest(parent);
        }
        hasher.finish()
    }
}

/// What identifies a result for reuse: the spec as it runs, and its inputs
/// (or what a `cache.key` template renders to in their place).
pub fn cache_key(spec: &Digest, inputs: &Digest) -> Digest {
    Hasher::default().digest(spec).digest(inputs).finish()
}

/// The digests of what one attempt will run, before it runs: the basis of
/// its record and of cache lookups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkDigests {
    pub spec: Digest,
    pub inputs: Digest,
}

/// Per task, the record digest and output digest of its provenance, once it
/// has one; the run's chain so far.
#[derive(Clone, Debug, Default)]
pub struct Chain {
    links: Vec<Option<(Digest, Digest)>>,
}

impl Chain {
    pub fn new(tasks: usize) -> Chain {
        Chain {
            links: vec![None; tasks],
        }
    }

    /// A chain of records already made (a resumed run's).
    pub fn from_records<'a>(
        state: &RunState,
        records: impl IntoIterator<Item = &'a Provenance>,
    ) -> Chain {
        let mut chain = Chain::new(state.task_count());
        for record in records {
            if let Some(task) = state.task_index(&record.task) {
                chain.links[task as usize] = Some((record.digest, record.output));
            }
        }
        chain
    }

    /// The digests of attempt `attempt` of `task` as it would run now.
    pub fn work(
        &self,
        state: &RunState,
        task: u32,
        attempt: u32,
    ) -> Result<WorkDigests, TemplateError> {
        let resolved = state.resolve(task, attempt)?;
        let spec = Hasher::default()
            .text(&state.task(task).id)
            .serialized(&resolved)
            .finish();
        let mut inputs = Hasher::default();
        for &need in state.valid().dag().needs(task) {
            if let Some((_, output)) = self.links[need as usize] {
                inputs.text(&state.task(need).id).digest(&output);
            }
        }
        if matches!(resolved.work, Work::Handler(_)) {
            inputs.json(&state.inputs_json());
        }
        Ok(WorkDigests {
            spec,
            inputs: inputs.finish(),
        })
    }

    /// The key attempt `attempt` of a `cache:` task is cached under; `None`
    /// for a task that is not cached. A `cache.key` template is the whole
    /// key (within the workflow and task): what it does not mention does
    /// not count, as with a cache key function elsewhere.
    pub fn cache_key(
        &self,
        state: &RunState,
        task: u32,
        attempt: u32,
    ) -> Option<Result<Digest, TemplateError>> {
        let policy = state.task(task).modifiers().cache.as_deref()?;
        Some(match &policy.key {
            Some(key) => state
                .render(task, attempt, key.as_str(), "cache.key")
                .map(|rendered| {
                    Hasher::default()
                        .text(&state.valid().workflow().name)
                        .text(&state.task(task).id)
                        .text(&rendered)
                        .finish()
                }),
            None => self
                .work(state, task, attempt)
                .map(|work| cache_key(&work.spec, &work.inputs)),
        })
    }

    /// Makes the record of `task`, which just succeeded at `attempt` with
    /// `output`, and links it into the chain. A task whose spec no longer
    /// evaluates (it cannot have run, so this does not happen for a real
    /// run) is recorded with the digest of the error.
    pub fn record(
        &mut self,
        state: &RunState,
        task: u32,
        attempt: u32,
        output: Option<&Value>,
        artifacts: &[Artifact],
    ) -> Provenance {
        let work = self.work(state, task, attempt).unwrap_or_else(|error| {
            let digest = Hasher::default().text(&error.to_string()).finish();
            WorkDigests {
                spec: digest,
                inputs: digest,
            }
        });
        let parents = state
            .valid()
            .dag()
            .needs(task)
            .iter()
            .filter_map(|&need| self.links[need as usize].map(|(record, _)| record))
            .collect();
        let mut produced = Hasher::default();
        produced.number(artifacts.len() as u64);
        for artifact in artifacts {
            produced
                .text(&artifact.path)
                .digest(&artifact.digest)
                .number(artifact.size);
        }
        let mut record = Provenance {
            task: state.task(task).id.to_string(),
            attempt,
            spec: work.spec,
            inputs: work.inputs,
            output: Digest::of_json(output.unwrap_or(&Value::Null)),
            artifacts: produced.finish(),
            parents,
            digest: Digest::default(),
        };
        record.digest = record.seal();
        self.links[task as usize] = Some((record.digest, record.output));
        record
    }

    /// Seals every record so far, in task order.
    pub fn root(&self) -> Digest {
        let mut hasher = Hasher::default();
        for (task, link) in self.links.iter().enumerate() {
            if let Some((record, _)) = link {
                hasher.number(task as u64).digest(record);
            }
        }
        hasher.finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::run::{Event, Millis, RunSetup};
    use crate::{Format, check_source};

    const SPEC: &str = "name: p\ntasks:\n  a: {run: 'echo a'}\n  b: {run: 'echo {{ tasks.a.output.n }}', needs: [a]}\n";

    fn chain_with(output: serde_json::Value) -> (Provenance, Provenance, Digest) {
        let valid = check_source(SPEC, Format::Yaml).unwrap();
        let mut state = RunState::new(Arc::new(valid), RunSetup::default());
        let mut chain = Chain::new(2);
        state.apply(&Event::RunStarted { at: Millis(0) }).unwrap();
        state
            .apply(&Event::TaskStarted {
                at: Millis(0),
                task: 0,
                attempt: 1,
            })
            .unwrap();
        let a = chain.record(&state, 0, 1, Some(&output), &[]);
        state
            .apply(&Event::TaskSucceeded {
                at: Millis(1),
                task: 0,
                attempt: 1,
                output: Some(Box::new(output)),
            })
            .unwrap();
        let b = chain.record(&state, 1, 1, None, &[]);
        (a, b, chain.root())
    }

    #[test]
    fn records_chain_to_their_parents_and_seal_their_fields() {
        let (a, b, root) = chain_with(json!({"n": 1}));
        assert_eq!(b.parents, [a.digest]);
        assert_eq!(a.seal(), a.digest);
        assert_eq!(chain_with(json!({"n": 1})).2, root, "deterministic");
        let mut edited = b.clone();
        edited.output = Digest::of_json(&json!("forged"));
        assert_ne!(edited.seal(), b.digest);
    }

    #[test]
    fn a_different_upstream_output_changes_everything_downstream() {
        let (a1, b1, root1) = chain_with(json!({"n": 1}));
        let (a2, b2, root2) = chain_with(json!({"n": 2}));
        assert_ne!(a1.output, a2.output);
        // b's script renders the value, and reads a's output.
        assert_ne!(b1.spec, b2.spec);
        assert_ne!(b1.inputs, b2.inputs);
        assert_ne!(root1, root2);
    }
}

//! Decoding what a backend stored back into the store's types. Everything
//! read is checked: a value that does not decode is [`Error::Corrupt`]
//! naming its run and where, never a panic and never a silently shorter
//! answer. Each backend reads its rows into the plain tuples below and
//! decodes them here, so backends decode alike.

use std::sync::Arc;

use baton_core::run::{Digest, Event, Millis, Provenance};

use crate::owner::{Fence, Owner, Ownership};
use crate::{Error, StoredWorkflow};

pub(crate) fn corrupt(run: &str, seq: u64, message: String) -> Error {
    Error::Corrupt {
        run: run.to_owned(),
        seq,
        message,
    }
}

pub(crate) fn digest_of(run: &str, bytes: &[u8]) -> Result<Digest, Error> {
    bytes
        .try_into()
        .map(Digest)
        .map_err(|_| corrupt(run, 0, format!("a digest of {} bytes", bytes.len())))
}

pub(crate) fn output(run: &str, task: u32, text: &str) -> Result<serde_json::Value, Error> {
    serde_json::from_str(text)
        .map_err(|error| corrupt(run, 0, format!("the output of task {task}: {error}")))
}

/// A status stored by its name.
pub(crate) fn named<T: serde::de::DeserializeOwned>(run: &str, name: &str) -> Result<T, Error> {
    serde_json::from_value(serde_json::Value::from(name))
        .map_err(|error| corrupt(run, 0, format!("unknown status `{name}`: {error}")))
}

pub(crate) fn millis(at: i64) -> Millis {
    Millis(u64::try_from(at).unwrap_or_default())
}

/// One stored batch of events, which must hold `count` of them.
pub(crate) fn events(
    run: &str,
    first_seq: u64,
    count: u64,
    text: &str,
) -> Result<Vec<Event>, Error> {
    let batch: Vec<Event> = serde_json::from_str(text).map_err(|error| {
        corrupt(
            run,
            first_seq,
            format!("the batch of events from here does not read back: {error}"),
        )
    })?;
    if batch.len() as u64 != count {
        return Err(corrupt(
            run,
            first_seq,
            format!(
                "the batch from here holds {} events, but {count} were recorded",
                batch.len()
            ),
        ));
    }
    Ok(batch)
}

/// A run's log from event `from` on, out of its stored batches `(first
/// sequence, count, events)` in order, starting with the one that holds
/// `from`: the batches must follow one another and end at the `recorded`
/// count, or the log is [`Error::Corrupt`], never a shorter history.
pub(crate) fn log<T: AsRef<str>>(
    run: &str,
    from: u64,
    recorded: u64,
    batches: impl IntoIterator<Item = (u64, u64, T)>,
) -> Result<Vec<Event>, Error> {
    let mut events = Vec::new();
    let mut next = None;
    for (first, count, text) in batches {
        let expected = *next.get_or_insert(first.min(from.min(recorded)));
        if first != expected {
            return Err(missing(run, expected, first));
        }
        let batch = self::events(run, first, count, text.as_ref())?;
        events.extend(batch.into_iter().skip(from.saturating_sub(first) as usize));
        next = Some(first + count);
    }
    let next = next.unwrap_or(0);
    if next != recorded {
        return Err(corrupt(
            run,
            next,
            format!("its log ends at event {next}, but {recorded} events were recorded"),
        ));
    }
    Ok(events)
}

fn missing(run: &str, from: u64, to: u64) -> Error {
    corrupt(
        run,
        from,
        format!(
            "events {from} to {} are missing from its log",
            to.saturating_sub(1)
        ),
    )
}

/// A provenance row as stored: the task, its attempt, five digests and the
/// parents' digests end to end.
pub(crate) type ProvenanceRow = (String, u32, [Vec<u8>; 5], Vec<u8>);

pub(crate) fn provenance_of(
    run: &str,
    (task, attempt, digests, parents): ProvenanceRow,
) -> Result<Provenance, Error> {
    let [spec, inputs, output, artifacts, digest] = digests;
    if parents.len() % 32 != 0 {
        return Err(corrupt(
            run,
            0,
            format!("task `{task}` has a torn list of parents"),
        ));
    }
    Ok(Provenance {
        spec: digest_of(run, &spec)?,
        inputs: digest_of(run, &inputs)?,
        output: digest_of(run, &output)?,
        artifacts: digest_of(run, &artifacts)?,
        parents: parents
            .chunks(32)
            .map(|parent| digest_of(run, parent))
            .collect::<Result<_, _>>()?,
        digest: digest_of(run, &digest)?,
        task,
        attempt,
    })
}

/// A `workflows` row: name, version, digest, created_at, spec.
pub(crate) type WorkflowRow = (String, u32, Vec<u8>, i64, String);

pub(crate) fn stored_workflow(
    (name, version, digest, created_at, spec): WorkflowRow,
) -> Result<StoredWorkflow, Error> {
    let workflow = serde_json::from_str(&spec)
        .map_err(|error| corrupt(&name, 0, format!("a registered workflow: {error}")))?;
    Ok(StoredWorkflow {
        digest: digest_of(&name, &digest)?,
        version,
        created_at: millis(created_at),
        workflow: Arc::new(workflow),
        name,
    })
}

/// A run's owner as its row and the owner's join read it.
pub(crate) type OwnerRow = (
    Option<String>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
);

/// Who drives a run, if anyone does (a run whose owner row is gone is
/// driven by nobody).
pub(crate) fn ownership(
    (id, token, since, pid, host, boot, process_start, expires_at): OwnerRow,
) -> Option<Ownership> {
    Some(Ownership {
        owner: Owner {
            id: id?,
            pid: u32::try_from(pid?).unwrap_or_default(),
            host: host?,
            boot: boot?,
            process_start: u64::try_from(process_start?).unwrap_or_default(),
        },
        fence: Fence(u64::try_from(token).unwrap_or_default()),
        since: millis(since.unwrap_or_default()),
        expires_at: millis(expires_at?),
    })
}

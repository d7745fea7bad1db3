//! W3C trace context for runs: a run's trace id and the span ids of the run
//! and of each task attempt, derived from the run's id. Every process that
//! drives the run (the first, one that resumes it after a crash, a replica
//! that takes it over) names them alike, so a run's spans form one trace
//! however many processes it passed through, and a task's `TRACEPARENT`
//! is the span its attempt is exported as.

use sha2::{Digest, Sha256};

/// The trace id of run `run`.
pub fn trace_id(run: &str) -> [u8; 16] {
    let mut id = [0; 16];
    id.copy_from_slice(&hashed(&["trace", run])[..16]);
    id
}

/// The span id of run `run` itself: the root of its trace.
pub fn run_span_id(run: &str) -> [u8; 8] {
    span(&["run", run])
}

/// The span id of attempt `attempt` of task `task` of run `run`.
pub fn attempt_span_id(run: &str, task: &str, attempt: u32) -> [u8; 8] {
    span(&["attempt", run, task, &attempt.to_string()])
}

/// `00-TRACE-SPAN-01`: a sampled W3C `traceparent` naming `span` of `trace`.
pub fn traceparent(trace: [u8; 16], span: [u8; 8]) -> String {
    format!("00-{}-{}-01", hex(&trace), hex(&span))
}

/// The trace and parent span a `traceparent` header names, if it is one
/// (version 00, ids not all zero).
pub fn parse_traceparent(header: &str) -> Option<([u8; 16], [u8; 8])> {
    let mut parts = header.trim().split('-');
    let (version, trace, span, _flags) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if version != "00" || parts.next().is_some() {
        return None;
    }
    let trace: [u8; 16] = unhex(trace)?.try_into().ok()?;
    let span: [u8; 8] = unhex(span)?.try_into().ok()?;
    (trace != [0; 16] && span != [0; 8]).then_some((trace, span))
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|at| u8::from_str_radix(&text[at..at + 2], 16).ok())
        .collect()
}

fn span(parts: &[&str]) -> [u8; 8] {
    let mut id = [0; 8];
    id.copy_from_slice(&hashed(parts)[..8]);
    id
}

fn hashed(parts: &[&str]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(b"baton trace context");
    for part in parts {
        // Lengths first: ("ab", "c") and ("a", "bc") differ.
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_s_ids_are_the_same_wherever_they_are_derived_and_differ_per_attempt() {
        assert_eq!(trace_id("r1"), trace_id("r1"));
        assert_ne!(trace_id("r1"), trace_id("r2"));
        assert_ne!(attempt_span_id("r1", "a", 1), attempt_span_id("r1", "a", 2));
        assert_ne!(attempt_span_id("r1", "a", 1), run_span_id("r1"));
    }

    #[test]
    fn a_traceparent_reads_back_and_a_malformed_one_is_refused() {
        let header = traceparent(trace_id("r1"), run_span_id("r1"));
        assert_eq!(header.len(), 55);
        assert_eq!(
            parse_traceparent(&header),
            Some((trace_id("r1"), run_span_id("r1")))
        );
        for bad in [
            "",
            "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b71692033-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333g-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-x",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
        }
    }
}

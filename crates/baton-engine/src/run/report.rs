//! What an attempt's task tells the loop when it ends (or when one of its
//! copies succeeds).

use baton_core::run::Artifact;

use crate::executor::Outcome;

/// A runner's report, tagged with what it ran.
pub(crate) struct Done {
    pub(crate) task: u32,
    pub(crate) attempt: u32,
    pub(crate) ran: Ran,
    pub(crate) outcome: Outcome,
    pub(crate) files: Files,
}

/// What a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ran {
    /// The attempt: its end holds the task's global slot.
    Attempt,
    Compensation,
    /// One item (copy) of the attempt succeeded; the attempt goes on.
    Copy(u32),
}

/// What an attempt consumed, produced or reused besides its outcome.
#[derive(Default)]
pub(crate) struct Files {
    pub(crate) consumed: Vec<Artifact>,
    pub(crate) produced: Vec<Artifact>,
    /// The run whose result it took instead of running.
    pub(crate) reused_from: Option<String>,
    /// The remote worker that ran it, if one did.
    pub(crate) worker: Option<String>,
}

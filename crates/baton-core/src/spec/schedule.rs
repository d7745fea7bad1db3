//! `schedule:`: a registered workflow whose runs `baton serve` starts on a
//! clock. What the policies mean is said once here; the times themselves
//! are worked out by [`crate::timetable`].

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// When runs start: `cron` read in `timezone`, each with `inputs`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// Five fields (minute hour day-of-month month day-of-week), or six
    /// with seconds first; `L`, `#` and `W` forms are understood.
    pub cron: String,
    /// An IANA time zone (`Europe/Berlin`) the cron is read in, so `0 2 * *
    /// *` stays 02:00 across daylight-saving changes. UTC when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    /// The inputs of every scheduled run. A workflow input named `tick`
    /// also receives the tick's time (RFC 3339, in the schedule's zone).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, Value>,
    #[serde(default)]
    pub catch_up: CatchUp,
    #[serde(default)]
    pub overlap: Overlap,
}

/// Ticks that passed while no server ran (or the schedule was paused by
/// downtime): which of them start a run once a server is back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// None: only ticks that are due now start runs.
    None,
    /// The newest missed tick starts one run; older ones are passed over.
    #[default]
    Latest,
    /// Every missed tick starts a run, oldest first.
    All,
}

/// A tick that comes while the schedule's previous run is still going.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// It is recorded as skipped and starts nothing.
    #[default]
    Skip,
    /// It waits, and starts once the previous run ends.
    Queue,
    /// It starts a run beside the previous one.
    Allow,
}

impl CatchUp {
    pub fn name(self) -> &'static str {
        match self {
            CatchUp::None => "none",
            CatchUp::Latest => "latest",
            CatchUp::All => "all",
        }
    }
}

impl Overlap {
    pub fn name(self) -> &'static str {
        match self {
            Overlap::Skip => "skip",
            Overlap::Queue => "queue",
            Overlap::Allow => "allow",
        }
    }
}

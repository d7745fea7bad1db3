//! Who drives a run: an [`Owner`] is one process (one engine), recorded
//! with enough to tell, from the same machine, whether it still lives; an
//! [`Ownership`] is a run's owner as the store holds it; a [`Fence`] is the
//! token a write carries to prove it comes from the current owner.

use std::collections::HashSet;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use baton_core::run::Millis;
use serde::{Deserialize, Serialize};

/// A process that drives runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    /// Unique per process (and per engine within one).
    pub id: String,
    pub pid: u32,
    pub host: String,
    /// The kernel's boot id: with `pid` and `process_start`, whether the
    /// process still runs can be told on its own machine.
    pub boot: String,
    /// When the process started, in clock ticks since boot
    /// (`/proc/PID/stat`), so a recycled pid is not mistaken for it.
    pub process_start: u64,
}

impl Owner {
    /// This process, under a fresh id.
    pub fn this_process() -> Owner {
        let pid = std::process::id();
        Owner {
            id: uuid::Uuid::new_v4().simple().to_string(),
            pid,
            host: host_name(),
            boot: boot_id(),
            process_start: process_start(pid).unwrap_or_default(),
        }
    }

    /// Whether the owner is known to be gone: it ran on this machine since
    /// its last boot and no process with its pid and start time is left,
    /// or the machine has rebooted since, or it is of this very process and
    /// its [`Presence`] was dropped (an engine that was dropped, which a
    /// program may replace). `false` when that cannot be told from here
    /// (another machine): only its lease says.
    pub fn is_gone(&self) -> bool {
        if self.host != host_name() {
            return false;
        }
        if self.boot != boot_id() {
            return true;
        }
        if process_start(self.pid) != Some(self.process_start) {
            return true;
        }
        self.pid == std::process::id() && !present().contains(&self.id)
    }
}

/// An owner of this process that is alive as long as this value is: what
/// tells [`Owner::is_gone`] an owner of this process apart from one whose
/// engine was dropped.
#[derive(Debug)]
pub struct Presence(Owner);

impl Presence {
    pub fn new(owner: Owner) -> Presence {
        present().insert(owner.id.clone());
        Presence(owner)
    }

    pub fn owner(&self) -> &Owner {
        &self.0
    }
}

impl Drop for Presence {
    fn drop(&mut self) {
        present().remove(&self.0.id);
    }
}

/// The ids of this process's owners that are present.
fn present() -> std::sync::MutexGuard<'static, HashSet<String>> {
    static PRESENT: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    PRESENT
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run's owner as recorded: who, since when, and until when its lease
/// holds unless renewed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ownership {
    pub owner: Owner,
    /// The run's fencing token under this owner.
    pub fence: Fence,
    /// When this owner claimed the run.
    pub since: Millis,
    /// When the owner's lease runs out unless it renews it.
    pub expires_at: Millis,
}

impl Ownership {
    /// Whether the owner still holds the run at `now`: its lease holds and
    /// it is not known to be gone.
    pub fn is_live(&self, now: Millis) -> bool {
        self.expires_at > now && !self.owner.is_gone()
    }
}

impl std::fmt::Display for Ownership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "driven by PID {} on {} since {}",
            self.owner.pid,
            self.owner.host,
            timestamp(self.since)
        )
    }
}

/// A run's fencing token: a write that carries an older one than the run
/// holds comes from an owner that lost the run, and is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fence(pub u64);

/// `2026-12-01T21:26:08.123Z`.
pub(crate) fn timestamp(at: Millis) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + StdDuration::from_millis(at.0)).to_string()
}

fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname").unwrap_or_else(|| "localhost".to_owned())
}

fn boot_id() -> String {
    read_trimmed("/proc/sys/kernel/random/boot_id").unwrap_or_default()
}

/// Field 22 of `/proc/PID/stat`: when the process started, in ticks.
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: count after the last.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_owner_is_not_gone_and_a_dead_pid_or_a_dropped_presence_is() {
        let presence = Presence::new(Owner::this_process());
        let owner = presence.owner().clone();
        assert!(!owner.is_gone());
        drop(presence);
        assert!(owner.is_gone());
        assert_ne!(owner.process_start, 0);
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        let start = process_start(pid);
        child.wait().unwrap();
        let dead = Owner {
            pid,
            process_start: start.unwrap_or(1),
            ..owner.clone()
        };
        assert!(dead.is_gone());
        let elsewhere = Owner {
            host: "another-machine".to_owned(),
            ..dead
        };
        assert!(!elsewhere.is_gone());
    }
}

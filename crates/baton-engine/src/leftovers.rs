//! Processes a dead `baton` left running. Every process of an attempt
//! carries `BATON_IDEMPOTENCY_KEY=RUN:TASK:ATTEMPT` in its environment (its
//! children inherit it), so on resume the engine finds them by that key in
//! `/proc` (which no recycled pid can match by accident) and stops them before
//! their task runs again: two copies of one task never run side by side.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::{Pid, getpgid};

/// SIGTERM to every live process carrying one of `keys`, SIGKILL to those
/// still there after `grace`. Returns how many were found.
pub(crate) async fn stop(keys: &[String], grace: Duration) -> usize {
    if keys.is_empty() {
        return 0;
    }
    let needles: Vec<Vec<u8>> = keys
        .iter()
        .map(|key| format!("BATON_IDEMPOTENCY_KEY={key}").into_bytes())
        .collect();
    let found = carrying(&needles);
    for &pid in &found {
        let _ = kill(pid, Signal::SIGTERM);
    }
    let deadline = tokio::time::Instant::now() + grace;
    let mut alive = found.clone();
    while !alive.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        alive.retain(|&pid| kill(pid, None).is_ok() && !is_zombie(pid));
    }
    for pid in alive {
        let _ = kill(pid, Signal::SIGKILL);
    }
    found.len()
}

/// Set once this process kills its tasks to exit: no run it drives
/// records anything after that, so the killed attempts stay in flight in
/// the log and a resume runs them again, rather than the run ending as
/// whatever their deaths would have made it.
static ABANDONED: AtomicBool = AtomicBool::new(false);

/// Whether this process is exiting after [`kill_now`].
pub(crate) fn abandoned() -> bool {
    ABANDONED.load(Ordering::SeqCst)
}

/// SIGKILL, at once, to every process of `run`'s attempts and to their
/// process groups (members that cleared their environment go with their
/// group): what a second Ctrl-C does, right before the process exits.
/// From then on no run of this process records anything. Returns how many
/// processes were found.
pub fn kill_now(run: &str) -> usize {
    ABANDONED.store(true, Ordering::SeqCst);
    let prefix = format!("BATON_IDEMPOTENCY_KEY={run}:").into_bytes();
    let found = matching(|variable| variable.starts_with(&prefix));
    for &pid in &found {
        if let Ok(group) = getpgid(Some(pid))
            && group != getpgid(None).unwrap_or(group)
        {
            let _ = killpg(group, Signal::SIGKILL);
        }
        let _ = kill(pid, Signal::SIGKILL);
    }
    found.len()
}

/// Pids whose environment holds one of `needles` exactly.
fn carrying(needles: &[Vec<u8>]) -> Vec<Pid> {
    matching(|variable| needles.iter().any(|needle| variable == needle.as_slice()))
}

/// Pids (other than this one) with an environment variable that `holds`.
fn matching(holds: impl Fn(&[u8]) -> bool) -> Vec<Pid> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let own = std::process::id();
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|environ| environ.split(|&byte| byte == 0).any(&holds))
        })
        .map(|pid| Pid::from_raw(pid as i32))
        .collect()
}

fn is_zombie(pid: Pid) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z'))
    })
}

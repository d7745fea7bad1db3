//! Circuit breakers, one per remote host this engine calls (`http` tasks,
//! agent endpoints): after `failures` failing calls in a row the host's
//! breaker opens, and for `cool_down` calls to it fail at once (failure
//! kind `circuit-open`, which `retry.on` can name) instead of piling onto
//! a host that is down; then `probes` calls are let through (half-open),
//! and the first to succeed closes it again while a failure opens it for
//! another cool-down. A failing call is one that did not get an answer
//! (refused, reset, timed out, stopped) or got a 5xx or a 429; other
//! answers, 4xx included, say the host is up. Remote workers and the
//! capabilities they serve have breakers of the same kind ([`Breaker`]),
//! kept by the dispatcher. Transitions are counted in the metrics
//! (`baton_breaker_transitions_total{target, name, to}`, and
//! `baton_breaker_open{target, name}` while open).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use baton_core::run::{Failure, FailureKind};

/// When a host's breaker opens and for how long.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerSettings {
    /// Failing calls in a row that open the breaker.
    pub failures: u32,
    /// How long it stays open.
    pub cool_down: baton_core::Duration,
    /// Calls let through at once when the cool-down is over.
    pub probes: u32,
}

impl Default for BreakerSettings {
    fn default() -> BreakerSettings {
        BreakerSettings {
            failures: 5,
            cool_down: baton_core::Duration::from_secs(30),
            probes: 1,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    Closed { failing: u32 },
    Open { until: Instant },
    HalfOpen { probing: u32 },
}

/// One breaker: a host's, a worker's or a capability's. Moves are
/// returned (as the state moved to) for the owner to count, and the last
/// [`KEPT_CHANGES`] are kept, for the registry to show.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Breaker {
    state: State,
    changes: std::collections::VecDeque<(Instant, &'static str)>,
}

/// A breaker's moves kept for people to read.
const KEPT_CHANGES: usize = 16;

/// A move of a breaker, as the agent registry shows it.
#[derive(
    Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
pub struct BreakerChange {
    /// `open`, `half_open` or `closed`.
    pub to: String,
    /// How long ago it moved.
    pub ms_ago: u64,
}

impl Default for Breaker {
    fn default() -> Breaker {
        Breaker {
            state: State::Closed { failing: 0 },
            changes: std::collections::VecDeque::new(),
        }
    }
}

impl Breaker {
    /// Lets one call through at `now`, or says how long until one may go
    /// (zero: the half-open probes are all out).
    pub(crate) fn admit(
        &mut self,
        now: Instant,
        settings: &BreakerSettings,
    ) -> Result<Option<&'static str>, Duration> {
        match self.state {
            State::Closed { .. } => Ok(None),
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen { probing: 1 };
                Ok(Some(self.moved("half_open", now)))
            }
            State::Open { until } => Err(until - now),
            State::HalfOpen { probing } if probing < settings.probes => {
                self.state = State::HalfOpen {
                    probing: probing + 1,
                };
                Ok(None)
            }
            State::HalfOpen { .. } => Err(Duration::ZERO),
        }
    }

    /// Whether [`Breaker::admit`] would let a call through at `now`,
    /// without letting one.
    pub(crate) fn admits(&self, now: Instant, settings: &BreakerSettings) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } => now >= until,
            State::HalfOpen { probing } => probing < settings.probes,
        }
    }

    /// Records how a call let through ended.
    pub(crate) fn record(
        &mut self,
        succeeded: bool,
        now: Instant,
        settings: &BreakerSettings,
    ) -> Option<&'static str> {
        let open = State::Open {
            until: now + settings.cool_down.as_std(),
        };
        let (state, moved) = match (self.state, succeeded) {
            (State::Closed { .. }, true) => (State::Closed { failing: 0 }, None),
            (State::Closed { failing }, false) if failing + 1 >= settings.failures => {
                (open, Some("open"))
            }
            (State::Closed { failing }, false) => (
                State::Closed {
                    failing: failing + 1,
                },
                None,
            ),
            (State::HalfOpen { .. }, true) => (State::Closed { failing: 0 }, Some("closed")),
            (State::HalfOpen { .. }, false) => (open, Some("open")),
            // A call let through before the breaker opened, ending late.
            (open @ State::Open { .. }, _) => (open, None),
        };
        self.state = state;
        moved.map(|to| self.moved(to, now))
    }

    /// Keeps a move, answering where it went.
    fn moved(&mut self, to: &'static str, now: Instant) -> &'static str {
        if self.changes.len() == KEPT_CHANGES {
            self.changes.pop_front();
        }
        self.changes.push_back((now, to));
        to
    }

    /// Its last moves, newest last.
    pub(crate) fn changes(&self, now: Instant) -> Vec<BreakerChange> {
        self.changes
            .iter()
            .map(|(at, to)| BreakerChange {
                to: (*to).to_owned(),
                ms_ago: now.saturating_duration_since(*at).as_millis() as u64,
            })
            .collect()
    }

    /// Where it stands at `now`.
    pub(crate) fn state(&self, now: Instant) -> BreakerState {
        match self.state {
            State::Closed { failing } => BreakerState::Closed { failing },
            State::Open { until } if until > now => BreakerState::Open {
                retry_in_ms: (until - now).as_millis() as u64,
            },
            State::Open { .. } | State::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }
}

/// Where a host's breaker stands, as the agent registry shows it.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize, schemars::JsonSchema,
)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum BreakerState {
    /// Calls go through; `failing` is how many failed in a row.
    Closed { failing: u32 },
    /// No call is made for `retry_in_ms` more milliseconds.
    Open { retry_in_ms: u64 },
    /// Probes are deciding.
    HalfOpen,
}

/// Why a call was not let through.
#[derive(Clone, Debug, PartialEq)]
struct Refused {
    host: String,
    /// How long until a probe is let through (zero: the probes are out).
    retry_in: Duration,
    failures: u32,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the circuit breaker for {} is open after {} failing calls in a row; the call was not made",
            self.host, self.failures
        )?;
        if !self.retry_in.is_zero() {
            write!(
                f,
                " (a call is let through again in {} ms)",
                self.retry_in.as_millis()
            )?;
        }
        Ok(())
    }
}

/// The breakers of every host this engine calls.
#[derive(Debug, Default)]
pub(crate) struct Breakers {
    settings: BreakerSettings,
    hosts: Mutex<HashMap<String, Breaker>>,
}

impl Breakers {
    pub(crate) fn new(settings: BreakerSettings) -> Breakers {
        Breakers {
            settings,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    /// Lets a call to `host` through, or says why not. The pass records
    /// the call's end; dropped without one, the call counts as failing (it
    /// timed out or was stopped).
    fn admit(self: &Arc<Self>, host: &str, now: Instant) -> Result<Pass, Refused> {
        let mut hosts = self.lock();
        let breaker = hosts.entry(host.to_owned()).or_default();
        match breaker.admit(now, &self.settings) {
            Ok(moved) => {
                if let Some(to) = moved {
                    transition(Target::Host, host, to);
                }
                Ok(Pass {
                    breakers: Arc::clone(self),
                    host: host.to_owned(),
                    recorded: false,
                })
            }
            Err(retry_in) => Err(self.refused(host, retry_in)),
        }
    }

    /// Lets a call to `url` through now, or the `circuit-open` failure the
    /// attempt ends with instead.
    pub(crate) fn let_through(self: &Arc<Self>, url: &str) -> Result<Pass, Failure> {
        self.admit(&host_of(url), Instant::now())
            .map_err(|refused| Failure::new(FailureKind::CircuitOpen, refused.to_string()))
    }

    /// Where the breaker of `url`'s host stands now.
    pub(crate) fn state_of(&self, url: &str) -> BreakerState {
        self.state(&host_of(url), Instant::now())
    }

    /// The last moves of the breaker of `url`'s host.
    pub(crate) fn changes_of(&self, url: &str) -> Vec<BreakerChange> {
        self.lock()
            .get(&host_of(url))
            .map(|breaker| breaker.changes(Instant::now()))
            .unwrap_or_default()
    }

    /// Where `host`'s breaker stands at `now` (closed if never called).
    fn state(&self, host: &str, now: Instant) -> BreakerState {
        self.lock()
            .get(host)
            .map_or(BreakerState::Closed { failing: 0 }, |breaker| {
                breaker.state(now)
            })
    }

    fn refused(&self, host: &str, retry_in: Duration) -> Refused {
        Refused {
            host: host.to_owned(),
            retry_in,
            failures: self.settings.failures,
        }
    }

    fn record(&self, host: &str, succeeded: bool, now: Instant) {
        let mut hosts = self.lock();
        if let Some(to) = hosts
            .get_mut(host)
            .and_then(|breaker| breaker.record(succeeded, now, &self.settings))
        {
            transition(Target::Host, host, to);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Breaker>> {
        self.hosts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What a breaker guards, as its metrics name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Host,
    Worker,
    Capability,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::Host => "host",
            Target::Worker => "worker",
            Target::Capability => "capability",
        }
    }
}

/// Counts a breaker's move `to` a state in the metrics.
pub(crate) fn transition(target: Target, name: &str, to: &'static str) {
    metrics::counter!(
        "baton_breaker_transitions_total",
        "target" => target.label(),
        "name" => name.to_owned(),
        "to" => to
    )
    .increment(1);
    metrics::gauge!("baton_breaker_open", "target" => target.label(), "name" => name.to_owned())
        .set(if to == "open" { 1.0 } else { 0.0 });
}

/// A call let through; [`Pass::done`] records how it went.
pub(crate) struct Pass {
    breakers: Arc<Breakers>,
    host: String,
    recorded: bool,
}

impl Pass {
    /// The host answered with `status`: up, unless that is a 5xx or 429.
    pub(crate) fn answered(mut self, status: u16) {
        self.recorded = true;
        self.breakers
            .record(&self.host, !failing_status(status), Instant::now());
    }
}

impl Drop for Pass {
    fn drop(&mut self) {
        if !self.recorded {
            self.breakers.record(&self.host, false, Instant::now());
        }
    }
}

/// The breaker's key for `url`: scheme, host and port.
fn host_of(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(parsed) => format!(
            "{}://{}:{}",
            parsed.scheme(),
            parsed.host_str().unwrap_or(""),
            parsed.port_or_known_default().unwrap_or(0)
        ),
        Err(_) => url.to_owned(),
    }
}

/// Whether an answer with `status` says the host is failing.
fn failing_status(status: u16) -> bool {
    status >= 500 || status == 429
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breakers() -> Arc<Breakers> {
        Arc::new(Breakers::new(BreakerSettings {
            failures: 3,
            cool_down: baton_core::Duration::from_secs(10),
            probes: 1,
        }))
    }

    fn call(breakers: &Arc<Breakers>, at: Instant, succeeds: bool) -> Result<(), Refused> {
        breakers.admit("h", at)?.done_at(succeeds, at);
        Ok(())
    }

    impl Pass {
        fn done_at(mut self, succeeded: bool, at: Instant) {
            self.recorded = true;
            self.breakers.record(&self.host, succeeded, at);
        }
    }

    #[test]
    fn failures_in_a_row_open_it_and_a_success_between_them_resets_the_count() {
        let (breakers, start) = (breakers(), Instant::now());
        for succeeds in [false, false, true, false, false] {
            call(&breakers, start, succeeds).unwrap();
        }
        call(&breakers, start, false).unwrap();
        let refused = call(&breakers, start, true).unwrap_err();
        assert_eq!(refused.retry_in, Duration::from_secs(10));
        assert!(
            refused.to_string().contains("open after 3 failing calls"),
            "{refused}"
        );
    }

    #[test]
    fn after_the_cool_down_one_probe_goes_through_and_decides() {
        let (breakers, start) = (breakers(), Instant::now());
        for _ in 0..3 {
            call(&breakers, start, false).unwrap();
        }
        let later = start + Duration::from_secs(10);
        let probe = breakers.admit("h", later).unwrap();
        assert_eq!(
            breakers
                .admit("h", later)
                .err()
                .map(|refused| refused.retry_in),
            Some(Duration::ZERO),
            "one probe at a time"
        );
        probe.done_at(false, later);
        assert!(
            call(&breakers, later + Duration::from_secs(5), true).is_err(),
            "open again"
        );
        let after = later + Duration::from_secs(10);
        call(&breakers, after, true).unwrap();
        for _ in 0..2 {
            call(&breakers, after, false).unwrap();
        }
        call(&breakers, after, true).unwrap();
    }

    #[test]
    fn a_call_that_never_reports_counts_as_failing() {
        let (breakers, start) = (breakers(), Instant::now());
        for _ in 0..3 {
            drop(breakers.admit("h", start).unwrap());
        }
        assert!(breakers.admit("h", start).is_err());
        assert!(breakers.admit("other", start).is_ok(), "hosts are apart");
    }

    #[test]
    fn the_state_is_shown_as_the_registry_sees_it() {
        let (breakers, start) = (breakers(), Instant::now());
        assert_eq!(
            breakers.state("h", start),
            BreakerState::Closed { failing: 0 }
        );
        call(&breakers, start, false).unwrap();
        assert_eq!(
            breakers.state("h", start),
            BreakerState::Closed { failing: 1 }
        );
        for _ in 0..2 {
            call(&breakers, start, false).unwrap();
        }
        assert_eq!(
            breakers.state("h", start + Duration::from_secs(4)),
            BreakerState::Open { retry_in_ms: 6000 }
        );
        assert_eq!(
            breakers.state("h", start + Duration::from_secs(10)),
            BreakerState::HalfOpen
        );
    }

    #[test]
    fn a_host_is_its_scheme_name_and_port() {
        assert_eq!(
            host_of("https://api.example/v1/x?y"),
            "https://api.example:443"
        );
        assert_eq!(host_of("http://127.0.0.1:8080/a"), "http://127.0.0.1:8080");
    }
}

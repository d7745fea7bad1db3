//! Delays between attempts: the four backoff curves, a ceiling, and jitter
//! drawn from a seed of (run id, task id, attempt), so replaying a run picks
//! exactly the delays it picked the first time.

use crate::duration::Duration;
use crate::seed::{SplitMix64, seed_of};
use crate::spec::{Backoff, RetryOn, RetryPolicy};

use super::event::{Failure, FailureKind};

/// The wait after attempt `attempt` (counting from 1) failed.
pub fn retry_delay(policy: &RetryPolicy, attempt: u32, run_id: &str, task_id: &str) -> Duration {
    let initial = policy.initial.as_millis() as f64;
    let step = f64::from(attempt.max(1));
    let base = match policy.backoff {
        Backoff::Constant => initial,
        Backoff::Linear => initial * step,
        Backoff::Exponential => initial * policy.multiplier.powf(step - 1.0),
        Backoff::Fibonacci => initial * fibonacci(attempt.max(1)),
    };
    let jittered = if policy.jitter > 0.0 {
        let mut random = SplitMix64(seed_of(&[
            run_id.as_bytes(),
            task_id.as_bytes(),
            &attempt.to_le_bytes(),
        ]));
        base * (1.0 + policy.jitter * (2.0 * random.unit() - 1.0))
    } else {
        base
    };
    let ceiling = policy.max.map_or(f64::MAX, |max| max.as_millis() as f64);
    Duration::from_millis(jittered.clamp(0.0, ceiling).min(u64::MAX as f64) as u64)
}

/// 1, 2, 3, 5, 8, ...: each delay the sum of the two before.
fn fibonacci(step: u32) -> f64 {
    let (mut previous, mut current) = (1.0f64, 1.0f64);
    for _ in 0..step {
        (previous, current) = (current, previous + current);
    }
    previous
}

/// Whether `policy` retries `failure`: all failures when `on` is empty,
/// except template errors, which the same state would repeat.
pub fn retries(policy: &RetryPolicy, failure: &Failure) -> bool {
    // The same state gives the same template error, and a loop that ran
    // out of iterations would only run out again.
    if matches!(failure.kind, FailureKind::Template | FailureKind::Repeat) {
        return false;
    }
    policy.on.is_empty() || policy.on.iter().any(|on| matches(*on, failure.kind))
}

fn matches(on: RetryOn, kind: FailureKind) -> bool {
    match (on, kind) {
        (RetryOn::Any, _) => true,
        (RetryOn::Error, kind) => kind != FailureKind::Timeout,
        (RetryOn::Timeout, kind) => kind == FailureKind::Timeout,
        (RetryOn::Check, kind) => kind == FailureKind::Check,
        (RetryOn::CircuitOpen, kind) => kind == FailureKind::CircuitOpen,
        (RetryOn::Lost, kind) => kind == FailureKind::Lost,
        (RetryOn::ExitCode(wanted), FailureKind::Exit { code }) => wanted == code,
        (RetryOn::HttpStatus(wanted), FailureKind::Http { status }) => wanted == status,
        (RetryOn::HttpClass(class), FailureKind::Http { status }) => {
            status / 100 == u16::from(class)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff: Backoff) -> RetryPolicy {
        RetryPolicy {
            max_attempts: 10,
            backoff,
            initial: Duration::from_secs(1),
            ..RetryPolicy::default()
        }
    }

    fn delays(policy: &RetryPolicy) -> Vec<u64> {
        (1..=6)
            .map(|attempt| retry_delay(policy, attempt, "run", "task").as_millis())
            .collect()
    }

    #[test]
    fn each_backoff_grows_as_named() {
        assert_eq!(
            delays(&policy(Backoff::Constant)),
            [1000, 1000, 1000, 1000, 1000, 1000]
        );
        assert_eq!(
            delays(&policy(Backoff::Linear)),
            [1000, 2000, 3000, 4000, 5000, 6000]
        );
        assert_eq!(
            delays(&policy(Backoff::Exponential)),
            [1000, 2000, 4000, 8000, 16000, 32000]
        );
        assert_eq!(
            delays(&policy(Backoff::Fibonacci)),
            [1000, 2000, 3000, 5000, 8000, 13000]
        );
    }

    #[test]
    fn max_caps_every_delay() {
        let capped = RetryPolicy {
            max: Some(Duration::from_secs(5)),
            ..policy(Backoff::Exponential)
        };
        assert_eq!(delays(&capped), [1000, 2000, 4000, 5000, 5000, 5000]);
    }

    #[test]
    fn jitter_is_spread_but_the_same_for_the_same_run_task_and_attempt() {
        let jittery = RetryPolicy {
            jitter: 0.5,
            ..policy(Backoff::Constant)
        };
        let first = delays(&jittery);
        assert_eq!(first, delays(&jittery));
        assert!(
            first.iter().all(|delay| (500..=1500).contains(delay)),
            "{first:?}"
        );
        assert!(first.windows(2).any(|pair| pair[0] != pair[1]), "{first:?}");
        let other_run: Vec<u64> = (1..=6)
            .map(|attempt| retry_delay(&jittery, attempt, "other", "task").as_millis())
            .collect();
        assert_ne!(first, other_run);
    }

    #[test]
    fn retries_only_the_failures_the_policy_names() {
        let exit = |code| Failure::new(FailureKind::Exit { code }, "");
        let http = |status| Failure::new(FailureKind::Http { status }, "");
        let timeout = Failure::new(FailureKind::Timeout, "");
        let on = |conditions: &[&str]| RetryPolicy {
            on: conditions
                .iter()
                .map(|text| text.parse().unwrap())
                .collect(),
            ..RetryPolicy::default()
        };
        assert!(retries(&on(&[]), &timeout));
        assert!(!retries(&on(&[]), &Failure::new(FailureKind::Template, "")));
        assert!(retries(&on(&["exit:75"]), &exit(75)));
        assert!(!retries(&on(&["exit:75"]), &exit(1)));
        assert!(retries(&on(&["http:5xx"]), &http(503)));
        assert!(!retries(&on(&["http:5xx"]), &http(404)));
        assert!(retries(&on(&["http:429"]), &http(429)));
        assert!(!retries(&on(&["error"]), &timeout));
        assert!(retries(&on(&["timeout"]), &timeout));
        assert!(retries(&on(&["error"]), &exit(1)));
    }
}

//! Policies that shape how a task runs: retries, timeouts, failures, caching.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, de};

use crate::duration::Duration;
use crate::spec::Template;

/// How a run reacts when a task fails for good.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Cancel running tasks and skip the rest.
    #[default]
    FailFast,
    /// Independent branches go on; dependants of the failed task are skipped.
    Continue,
    /// Run the `compensate` actions of succeeded tasks in reverse order.
    Compensate,
}

/// How the delay between attempts grows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Backoff {
    Constant,
    Linear,
    #[default]
    Exponential,
    Fibonacci,
}

/// Which failures a retry policy retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RetryOn {
    /// Any failure, timeouts included.
    Any,
    /// A failure other than a timeout.
    Error,
    /// A timeout.
    Timeout,
    /// An output that failed the task's `check`.
    Check,
    /// A process that exits with this code.
    ExitCode(i32),
    /// An HTTP response with exactly this status.
    HttpStatus(u16),
    /// An HTTP response in this class: 4 for `4xx`, 5 for `5xx`.
    HttpClass(u8),
    /// A call not made because the host's circuit breaker was open.
    CircuitOpen,
    /// A remote worker's lease on the attempt expired (the worker died or
    /// was cut off).
    Lost,
}

/// Why a `retry.on` entry did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid retry condition `{0}`: use any, error, timeout, check, circuit-open, lost, exit:CODE, http:STATUS or http:5xx"
)]
pub struct ParseRetryOnError(String);

impl FromStr for RetryOn {
    type Err = ParseRetryOnError;

    fn from_str(text: &str) -> Result<RetryOn, ParseRetryOnError> {
        let fail = || ParseRetryOnError(text.to_owned());
        match text {
            "any" => return Ok(RetryOn::Any),
            "error" => return Ok(RetryOn::Error),
            "timeout" => return Ok(RetryOn::Timeout),
            "check" => return Ok(RetryOn::Check),
            "circuit-open" => return Ok(RetryOn::CircuitOpen),
            "lost" => return Ok(RetryOn::Lost),
            _ => {}
        }
        if let Some(code) = text.strip_prefix("exit:") {
            return code.parse().map(RetryOn::ExitCode).map_err(|_| fail());
        }
        let status = text.strip_prefix("http:").ok_or_else(fail)?;
        if let Some(class) = status.strip_suffix("xx") {
            return match class.parse::<u8>() {
                Ok(class @ 1..=5) => Ok(RetryOn::HttpClass(class)),
                _ => Err(fail()),
            };
        }
        match status.parse::<u16>() {
            Ok(status @ 100..=599) => Ok(RetryOn::HttpStatus(status)),
            _ => Err(fail()),
        }
    }
}

impl fmt::Display for RetryOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RetryOn::Any => f.write_str("any"),
            RetryOn::Error => f.write_str("error"),
            RetryOn::Timeout => f.write_str("timeout"),
            RetryOn::Check => f.write_str("check"),
            RetryOn::CircuitOpen => f.write_str("circuit-open"),
            RetryOn::Lost => f.write_str("lost"),
            RetryOn::ExitCode(code) => write!(f, "exit:{code}"),
            RetryOn::HttpStatus(status) => write!(f, "http:{status}"),
            RetryOn::HttpClass(class) => write!(f, "http:{class}xx"),
        }
    }
}

impl Serialize for RetryOn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RetryOn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RetryOn, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

impl JsonSchema for RetryOn {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "RetryOn".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "Which failures to retry: any, error, timeout, check, circuit-open, lost, exit:CODE, http:STATUS or http:5xx.",
            "type": "string",
            "pattern": "^(any|error|timeout|check|circuit-open|lost|exit:-?[0-9]+|http:[1-5]([0-9][0-9]|xx))$"
        })
    }
}

/// When and how often a failed task is tried again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included; 1 means no retry.
    #[serde(default = "RetryPolicy::default_max_attempts")]
    pub max_attempts: u32,
    #[serde(default)]
    pub backoff: Backoff,
    /// The delay before the second attempt.
    #[serde(default = "RetryPolicy::default_initial")]
    pub initial: Duration,
    /// The longest delay, whatever the backoff computes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<Duration>,
    /// Growth factor of `exponential` backoff.
    #[serde(default = "RetryPolicy::default_multiplier")]
    pub multiplier: f64,
    /// Random spread as a fraction of the delay, 0 to 1; seeded by run, task
    /// and attempt so a replay picks the same delays.
    #[serde(default)]
    pub jitter: f64,
    /// The failures to retry; all of them when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub on: Vec<RetryOn>,
}

impl RetryPolicy {
    fn default_max_attempts() -> u32 {
        3
    }

    fn default_initial() -> Duration {
        Duration::from_secs(1)
    }

    fn default_multiplier() -> f64 {
        2.0
    }
}

impl Default for RetryPolicy {
    fn default() -> RetryPolicy {
        RetryPolicy {
            max_attempts: RetryPolicy::default_max_attempts(),
            backoff: Backoff::default(),
            initial: RetryPolicy::default_initial(),
            max: None,
            multiplier: RetryPolicy::default_multiplier(),
            jitter: 0.0,
            on: Vec::new(),
        }
    }
}

/// What a timed-out task becomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    #[default]
    Fail,
    Skip,
    Compensate,
}

/// A time limit on a task: `timeout: 10m`, or the long form with
/// `on_timeout` and the grace between SIGTERM and SIGKILL.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    pub after: Duration,
    #[serde(default)]
    pub on_timeout: OnTimeout,
    #[serde(default = "Timeout::default_grace")]
    pub grace: Duration,
}

impl Timeout {
    pub fn after(after: Duration) -> Timeout {
        Timeout {
            after,
            on_timeout: OnTimeout::Fail,
            grace: Timeout::default_grace(),
        }
    }

    fn default_grace() -> Duration {
        Duration::from_secs(10)
    }
}

impl<'de> Deserialize<'de> for Timeout {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Timeout, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct LongTimeout {
            after: Duration,
            #[serde(default)]
            on_timeout: OnTimeout,
            #[serde(default = "Timeout::default_grace")]
            grace: Duration,
        }

        let value = crate::spec::unique::value(deserializer)?;
        if !value.is_object() {
            let after: Duration = serde_json::from_value(value).map_err(de::Error::custom)?;
            return Ok(Timeout::after(after));
        }
        let long: LongTimeout = serde_json::from_value(value).map_err(de::Error::custom)?;
        Ok(Timeout {
            after: long.after,
            on_timeout: long.on_timeout,
            grace: long.grace,
        })
    }
}

/// Reuse of an earlier successful result: `cache: true`, or with a key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CachePolicy {
    /// A template whose rendering is the cache key (within the workflow and
    /// task), in place of the hashes of the resolved spec and inputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Template>,
    /// How long a cached result stays usable; forever when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
}

/// `cache: true | false | {key, ttl}`, read into an optional policy.
pub(crate) mod cache_field {
    use super::*;

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Box<CachePolicy>>, D::Error> {
        let value = crate::spec::unique::value(deserializer)?;
        match value {
            serde_json::Value::Bool(true) => Ok(Some(Box::default())),
            serde_json::Value::Bool(false) | serde_json::Value::Null => Ok(None),
            other => serde_json::from_value(other)
                .map(Some)
                .map_err(de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_conditions_parse_and_print_back() {
        for text in ["any", "error", "timeout", "exit:3", "http:503", "http:5xx"] {
            let parsed: RetryOn = text.parse().unwrap();
            assert_eq!(parsed.to_string(), text);
        }
        for text in ["http:6xx", "http:42", "exit:x", "sometimes"] {
            assert!(text.parse::<RetryOn>().is_err(), "{text}");
        }
    }

    #[test]
    fn timeout_takes_a_duration_or_a_mapping() {
        let short: Timeout = serde_json::from_str("\"10m\"").unwrap();
        assert_eq!(short, Timeout::after(Duration::from_secs(600)));
        let long: Timeout =
            serde_json::from_str(r#"{"after": "5s", "on_timeout": "skip", "grace": "1s"}"#)
                .unwrap();
        assert_eq!(long.on_timeout, OnTimeout::Skip);
        assert_eq!(long.grace, Duration::from_secs(1));
        let error =
            serde_json::from_str::<Timeout>(r#"{"after": "5s", "on_timout": "skip"}"#).unwrap_err();
        assert!(
            error.to_string().contains("unknown field `on_timout`"),
            "{error}"
        );
    }
}

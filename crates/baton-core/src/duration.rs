//! Human durations as written in specs: `500ms`, `90s`, `10m`, `1h30m`, `2d`.
//!
//! A bare integer is read as seconds, so JSON written by programs can say
//! `"timeout": 90`. Durations print back in the same canonical form, which is
//! what makes a spec round-trip through YAML and JSON unchanged.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// A non-negative span of time with millisecond resolution.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Duration(std::time::Duration);

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Why a duration did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}")]
pub struct ParseDurationError {
    text: String,
    reason: &'static str,
}

impl Duration {
    pub const ZERO: Duration = Duration(std::time::Duration::ZERO);

    pub const fn from_millis(millis: u64) -> Duration {
        Duration(std::time::Duration::from_millis(millis))
    }

    pub const fn from_secs(secs: u64) -> Duration {
        Duration(std::time::Duration::from_secs(secs))
    }

    pub fn as_millis(self) -> u64 {
        u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX)
    }

    pub fn as_std(self) -> std::time::Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(duration: std::time::Duration) -> Duration {
        Duration(duration)
    }
}

impl FromStr for Duration {
    type Err = ParseDurationError;

    fn from_str(text: &str) -> Result<Duration, ParseDurationError> {
        let fail = |reason| ParseDurationError {
            text: text.to_owned(),
            reason,
        };
        if text.is_empty() {
            return Err(fail("it is empty"));
        }
        let mut rest = text;
        let mut total: u64 = 0;
        let mut previous_unit = usize::MAX;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(fail("expected a number such as `90s`, `10m` or `1h30m`"));
            }
            let number: u64 = rest[..digits]
                .parse()
                .map_err(|_| fail("the number is too large"))?;
            rest = &rest[digits..];
            let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
            if unit_len == 0 {
                return Err(fail("a unit is missing: use ms, s, m, h or d"));
            }
            let unit = &rest[..unit_len];
            let position = UNITS
                .iter()
                .position(|(name, _)| *name == unit)
                .ok_or_else(|| fail("unknown unit: use ms, s, m, h or d"))?;
            if previous_unit != usize::MAX && position <= previous_unit {
                return Err(fail("units must go from largest to smallest, each once"));
            }
            previous_unit = position;
            total = number
                .checked_mul(UNITS[position].1)
                .and_then(|millis| total.checked_add(millis))
                .ok_or_else(|| fail("it is too long"))?;
            rest = &rest[unit_len..];
        }
        Ok(Duration::from_millis(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (name, size) in UNITS {
            if millis >= size {
                write!(f, "{}{name}", millis / size)?;
                millis %= size;
            }
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct Visitor;

        impl de::Visitor<'_> for Visitor {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as `90s`, `10m` or `1h30m`, or whole seconds")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
                secs.checked_mul(1000)
                    .map(Duration::from_millis)
                    .ok_or_else(|| E::custom(format!("invalid duration `{secs}`: it is too long")))
            }

            fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
                u64::try_from(secs)
                    .map_err(|_| E::custom(format!("invalid duration `{secs}`: it is negative")))
                    .and_then(|secs| self.visit_u64(secs))
            }
        }

        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration such as `500ms`, `90s`, `10m`, `1h30m` or `2d`, or whole seconds.",
            "oneOf": [
                { "type": "string", "pattern": "^([0-9]+(ms|s|m|h|d))+$" },
                { "type": "integer", "minimum": 0 }
            ]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<u64, String> {
        text.parse::<Duration>()
            .map(Duration::as_millis)
            .map_err(|error| error.to_string())
    }

    #[test]
    fn parses_single_and_compound_units() {
        assert_eq!(parse("500ms"), Ok(500));
        assert_eq!(parse("90s"), Ok(90_000));
        assert_eq!(parse("10m"), Ok(600_000));
        assert_eq!(parse("1h30m"), Ok(5_400_000));
        assert_eq!(parse("2d"), Ok(172_800_000));
        assert_eq!(parse("1m500ms"), Ok(60_500));
        assert_eq!(parse("0s"), Ok(0));
    }

    #[test]
    fn rejects_malformed_text_with_a_reason() {
        for (text, reason) in [
            ("", "empty"),
            ("10", "unit is missing"),
            ("10x", "unknown unit"),
            ("s", "expected a number"),
            ("-5s", "expected a number"),
            ("1h30", "unit is missing"),
            ("30m1h", "largest to smallest"),
            ("1m1m", "largest to smallest"),
            ("99999999999999999999s", "too large"),
            ("999999999999999d", "too long"),
            ("1.5s", "unit is missing"),
        ] {
            let error = parse(text).unwrap_err();
            assert!(error.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn prints_canonically_so_round_trips_are_stable() {
        for text in ["500ms", "45s", "1h30m", "2d1h1m1s1ms", "0s"] {
            let duration: Duration = text.parse().unwrap();
            assert_eq!(duration.to_string(), text);
        }
        let ninety: Duration = "90s".parse().unwrap();
        assert_eq!(ninety.to_string(), "1m30s");
    }

    #[test]
    fn integers_are_seconds() {
        let duration: Duration = serde_json::from_str("90").unwrap();
        assert_eq!(duration, Duration::from_secs(90));
        assert!(serde_json::from_str::<Duration>("-1").is_err());
    }
}

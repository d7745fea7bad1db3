//! When a [`Schedule`]'s ticks fall, and which of them are due: pure
//! functions of the schedule and the times they are given, so a scheduler
//! (and its tests) bring their own clock.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::run::Millis;
use crate::spec::{CatchUp, Schedule};

/// A schedule's cron, read in its time zone.
#[derive(Clone, Debug)]
pub struct Timetable {
    cron: croner::Cron,
    zone: Tz,
}

/// Why a schedule has no timetable.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("`{cron}` is not a cron expression: {source}")]
    Cron {
        cron: String,
        #[source]
        source: croner::errors::CronError,
    },
    #[error("`{0}` is not an IANA time zone (such as `Europe/Berlin` or `UTC`)")]
    Zone(String),
}

/// Which ticks start runs now, and which were passed over.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Due {
    /// Ticks that start a run, oldest first.
    pub start: Vec<Millis>,
    /// Ticks passed over by the catch-up policy, oldest first.
    pub missed: Vec<Millis>,
}

/// The most ticks one look at a schedule considers: a schedule that fires
/// every second and was down for a month catches up over several looks
/// rather than in one enormous one.
pub const MAX_TICKS: usize = 1000;

impl Timetable {
    pub fn new(schedule: &Schedule) -> Result<Timetable, ScheduleError> {
        Ok(Timetable {
            cron: cron(schedule)?,
            zone: zone(schedule)?,
        })
    }

    /// Everything wrong with `schedule`: its cron and its zone both.
    pub fn errors(schedule: &Schedule) -> Vec<ScheduleError> {
        [cron(schedule).err(), zone(schedule).err()]
            .into_iter()
            .flatten()
            .collect()
    }

    /// The first tick after `after`, if the cron ever fires again. Ticks
    /// fall on whole seconds: the search starts from `after`'s second
    /// (croner carries a start's fraction into what it finds).
    pub fn next_after(&self, after: Millis) -> Option<Millis> {
        let whole = Millis(after.0 - after.0 % 1000);
        let start = self.zone.from_utc_datetime(&utc(whole)?.naive_utc());
        let next = self.cron.find_next_occurrence(&start, false).ok()?;
        u64::try_from(next.timestamp_millis()).ok().map(Millis)
    }

    /// Ticks after `after` up to and including `until`, oldest first, at
    /// most `limit` of them.
    pub fn between(&self, after: Millis, until: Millis, limit: usize) -> Vec<Millis> {
        let mut ticks = Vec::new();
        let mut at = after;
        while ticks.len() < limit {
            match self.next_after(at) {
                Some(next) if next <= until => {
                    ticks.push(next);
                    at = next;
                }
                _ => break,
            }
        }
        ticks
    }

    /// `at` as RFC 3339 in the schedule's zone: what a run's `tick` input
    /// receives.
    pub fn local(&self, at: Millis) -> String {
        utc(at).map_or_else(String::new, |time| {
            time.with_timezone(&self.zone).to_rfc3339()
        })
    }

    /// Which ticks after `last` (the last one handled) start runs at `now`.
    /// A tick up to `slack` old is on time (a scheduler looks every so
    /// often); older ones were missed, and `catch_up` says which of those
    /// still start.
    pub fn due(&self, catch_up: CatchUp, last: Millis, now: Millis, slack: crate::Duration) -> Due {
        let ticks = self.between(last, now, MAX_TICKS);
        let on_time = |tick: &Millis| now.since(*tick) <= slack;
        let mut due = Due::default();
        match catch_up {
            CatchUp::All => due.start = ticks,
            CatchUp::Latest => {
                if let Some((newest, older)) = ticks.split_last() {
                    due.missed = older.to_vec();
                    due.start.push(*newest);
                }
            }
            CatchUp::None => {
                let (start, missed) = ticks.into_iter().partition(on_time);
                due.start = start;
                due.missed = missed;
            }
        }
        due
    }
}

fn cron(schedule: &Schedule) -> Result<croner::Cron, ScheduleError> {
    croner::Cron::from_str(&schedule.cron).map_err(|source| ScheduleError::Cron {
        cron: schedule.cron.clone(),
        source,
    })
}

fn zone(schedule: &Schedule) -> Result<Tz, ScheduleError> {
    match &schedule.timezone {
        None => Ok(Tz::UTC),
        Some(name) => Tz::from_str(name).map_err(|_| ScheduleError::Zone(name.clone())),
    }
}

fn utc(at: Millis) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(i64::try_from(at.0).ok()?)
}

/// Parses `text` as a time in `zone`: RFC 3339 (`2026-11-01T02:00:00Z`), a
/// local date and time (`2026-11-01T02:00`), or a date (`2026-11-01`, its
/// midnight; with `end_of_day`, its last millisecond).
pub fn parse_time(text: &str, zone: Option<&str>, end_of_day: bool) -> Option<Millis> {
    let zone = match zone {
        None => Tz::UTC,
        Some(name) => Tz::from_str(name).ok()?,
    };
    let millis = |time: DateTime<Tz>| u64::try_from(time.timestamp_millis()).ok().map(Millis);
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return u64::try_from(time.timestamp_millis()).ok().map(Millis);
    }
    for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"] {
        if let Ok(local) = chrono::NaiveDateTime::parse_from_str(text, format) {
            return millis(zone.from_local_datetime(&local).earliest()?);
        }
    }
    let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let local = if end_of_day {
        date.and_hms_milli_opt(23, 59, 59, 999)?
    } else {
        date.and_hms_opt(0, 0, 0)?
    };
    millis(zone.from_local_datetime(&local).earliest()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, zone: Option<&str>) -> Timetable {
        Timetable::new(&Schedule {
            cron: cron.to_owned(),
            timezone: zone.map(str::to_owned),
            inputs: Default::default(),
            catch_up: CatchUp::default(),
            overlap: Default::default(),
        })
        .unwrap()
    }

    fn at(text: &str) -> Millis {
        parse_time(text, None, false).unwrap()
    }

    #[test]
    fn a_daily_cron_in_a_zone_fires_at_local_time_across_a_daylight_saving_change() {
        let berlin = schedule("0 2 * * *", Some("Europe/Berlin"));
        // Berlin leaves summer time at 03:00 on 2026-10-25, so 02:00 comes
        // twice that night: the schedule fires once, at the first. Before,
        // 02:00 local is 00:00Z; after, 01:00Z.
        let ticks = berlin.between(at("2026-10-23T12:00:00Z"), at("2026-10-27T12:00:00Z"), 10);
        let shown: Vec<String> = ticks.iter().map(|&tick| berlin.local(tick)).collect();
        assert_eq!(
            shown,
            [
                "2026-10-24T02:00:00+02:00",
                "2026-10-25T02:00:00+02:00",
                "2026-10-26T02:00:00+01:00",
                "2026-10-27T02:00:00+01:00",
            ]
        );
        assert_eq!(ticks[0], at("2026-10-24T00:00:00Z"));
        assert_eq!(ticks[3], at("2026-10-27T01:00:00Z"));
    }

    #[test]
    fn ticks_are_after_the_last_one_handled_and_up_to_now_inclusive() {
        let hourly = schedule("0 * * * *", None);
        let ticks = hourly.between(at("2026-11-01T01:00:00Z"), at("2026-11-01T03:00:00Z"), 10);
        assert_eq!(
            ticks,
            [at("2026-11-01T02:00:00Z"), at("2026-11-01T03:00:00Z")]
        );
        assert_eq!(
            hourly
                .between(at("2026-11-01T01:00:00Z"), at("2026-11-01T03:00:00Z"), 1)
                .len(),
            1
        );
    }

    #[test]
    fn after_downtime_catch_up_starts_none_the_newest_or_every_missed_tick() {
        let hourly = schedule("0 * * * *", None);
        let last = at("2026-11-01T00:00:00Z");
        // Down from just after midnight to 03:00:20: ticks 01, 02 and 03.
        let now = at("2026-11-01T03:00:20Z");
        let slack = crate::Duration::from_secs(60);
        let all = hourly.due(CatchUp::All, last, now, slack);
        assert_eq!(all.start.len(), 3);
        assert!(all.missed.is_empty());
        let latest = hourly.due(CatchUp::Latest, last, now, slack);
        assert_eq!(latest.start, [at("2026-11-01T03:00:00Z")]);
        assert_eq!(
            latest.missed,
            [at("2026-11-01T01:00:00Z"), at("2026-11-01T02:00:00Z")]
        );
        let none = hourly.due(CatchUp::None, last, now, slack);
        assert_eq!(none.start, [at("2026-11-01T03:00:00Z")], "03:00 is on time");
        assert_eq!(none.missed.len(), 2);
        let late = hourly.due(CatchUp::None, last, at("2026-11-01T03:30:00Z"), slack);
        assert!(late.start.is_empty(), "03:00 is half an hour late: missed");
        assert_eq!(late.missed.len(), 3);
    }

    #[test]
    fn ticks_fall_on_whole_seconds_whatever_the_time_looked_from() {
        let daily = schedule("0 3 * * *", Some("Europe/Berlin"));
        let looked = Millis(at("2026-11-01T10:00:00Z").0 + 355);
        let next = daily.next_after(looked).unwrap();
        assert_eq!(daily.local(next), "2026-11-02T03:00:00+01:00");
        // A tick looked from just after it is not found again.
        assert_eq!(daily.next_after(Millis(next.0 + 1)), daily.next_after(next));
    }

    #[test]
    fn nothing_is_due_before_the_next_tick() {
        let hourly = schedule("0 * * * *", None);
        let due = hourly.due(
            CatchUp::All,
            at("2026-11-01T01:00:00Z"),
            at("2026-11-01T01:59:59Z"),
            crate::Duration::from_secs(60),
        );
        assert_eq!(due, Due::default());
    }

    #[test]
    fn dates_are_read_in_the_schedule_s_zone_and_a_last_day_is_taken_whole() {
        assert_eq!(
            parse_time("2026-11-01", Some("Europe/Berlin"), false),
            Some(at("2026-10-31T23:00:00Z"))
        );
        assert_eq!(
            parse_time("2026-11-30", None, true),
            Some(at("2026-11-30T23:59:59.999Z"))
        );
        assert_eq!(
            parse_time("2026-11-01T02:00", None, false),
            Some(at("2026-11-01T02:00:00Z"))
        );
        assert_eq!(parse_time("yesterday", None, false), None);
    }

    #[test]
    fn a_bad_cron_or_zone_is_refused_with_what_is_wrong() {
        let bad = |cron: &str, zone: Option<&str>| {
            Timetable::new(&Schedule {
                cron: cron.to_owned(),
                timezone: zone.map(str::to_owned),
                inputs: Default::default(),
                catch_up: CatchUp::default(),
                overlap: Default::default(),
            })
            .unwrap_err()
            .to_string()
        };
        assert!(bad("61 * * * *", None).contains("`61 * * * *` is not a cron expression"));
        assert!(bad("0 2 * * *", Some("Mars/Olympus")).contains("not an IANA time zone"));
    }
}

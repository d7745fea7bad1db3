//! Any text as a schedule's cron and time zone, and as the times a
//! backfill is given, plus any `traceparent` header: reading them must
//! refuse what is not one (an error, `None`) and never panic, and looking
//! for ticks must end.
#![no_main]

use baton_core::run::Millis;
use baton_core::spec::{CatchUp, Schedule};
use baton_core::timetable::{Timetable, parse_time};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\n');
    let cron = parts.next().unwrap_or_default();
    let zone = parts.next().filter(|zone| !zone.is_empty());
    let rest = parts.next().unwrap_or_default();
    let _ = parse_time(rest, zone, false);
    let _ = parse_time(rest, zone, true);
    let _ = baton_core::run::trace_context::parse_traceparent(rest);
    let schedule = Schedule {
        cron: cron.to_owned(),
        timezone: zone.map(str::to_owned),
        inputs: Default::default(),
        catch_up: CatchUp::All,
        overlap: Default::default(),
    };
    let _ = Timetable::errors(&schedule);
    if let Ok(timetable) = Timetable::new(&schedule) {
        let start = Millis(u64::from(data.first().copied().unwrap_or(0)) * 86_400_000 * 30);
        let _ = timetable.between(start, Millis(start.0 + 7 * 86_400_000), 50);
        let _ = timetable.due(CatchUp::All, start, Millis(start.0 + 86_400_000), baton_core::Duration::from_secs(60));
        if let Some(tick) = timetable.next_after(Millis(u64::MAX / 2)) {
            let _ = timetable.local(tick);
        }
    }
});

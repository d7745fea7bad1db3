//! Any bytes as a stored batch of events, and as a stored snapshot, for a
//! few workflows: decoding, folding, deciding and restoring must refuse
//! what does not fit (an error) and never panic, as a damaged or foreign
//! database must not bring a command down.
#![no_main]

use std::sync::{Arc, OnceLock};

use baton_core::run::{Budget, Digest, Event, Millis, RunSetup, RunState, Sealed};
use baton_core::{Format, Valid, check_source};
use libfuzzer_sys::fuzz_target;

const SPECS: [&str; 3] = [
    "name: a\ntasks:\n  a: {noop: true}\n  b: {run: x, needs: [a], retry: {max_attempts: 3}}\n  c: {run: x, needs: [a], concurrency_key: k}\n",
    "name: b\non_failure: compensate\ntasks:\n  a: {run: x, compensate: {run: y}}\n  gate: {approval: {prompt: go?, choices: [go, stop], timeout: 1h, default: stop}, needs: [a]}\n  b: {run: x, needs: [gate], when: \"tasks.gate.output.choice == 'go'\"}\n",
    "name: c\ntasks:\n  each: {foreach: {items: '[1, 2, 3]'}, run: x}\n  vote: {swarm: {count: 3, reduce: majority}, run: x, needs: [each]}\n  fix: {run: x, escalate: boss}\n  boss: {noop: true}\n",
];

fn workflows() -> &'static [Arc<Valid>] {
    static VALID: OnceLock<Vec<Arc<Valid>>> = OnceLock::new();
    VALID.get_or_init(|| {
        SPECS
            .iter()
            .map(|spec| Arc::new(check_source(spec, Format::Yaml).expect("a valid spec")))
            .collect()
    })
}

fn drive(state: &mut RunState, events: &[Event]) {
    let mut commands = Vec::new();
    for (at, event) in events.iter().enumerate() {
        let _ = state.apply(event);
        commands.clear();
        state.decide(Millis(at as u64 * 1000), Budget::default(), &mut commands);
        for command in &commands {
            if let Some(event) = command.event(Millis(at as u64)) {
                let _ = state.apply(&event);
            }
        }
    }
    let _ = state.metrics();
    let _ = state.in_flight();
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, data)) = data.split_first() else {
        return;
    };
    let valid = &workflows()[usize::from(which) % SPECS.len()];
    let setup = || RunSetup {
        run_id: "fuzz".to_owned(),
        ..RunSetup::default()
    };
    // As a batch of events (a stored `event_batches` row).
    if let Ok(events) = serde_json::from_slice::<Vec<Event>>(data) {
        let mut state = RunState::new(Arc::clone(valid), setup());
        drive(&mut state, &events);
        let sealed = state.snapshot(events.len() as u64).seal();
        let restored = RunState::restore(
            Arc::clone(valid),
            setup(),
            sealed.open().expect("a snapshot just taken opens"),
        )
        .expect("a snapshot of this workflow restores");
        assert_eq!(restored.snapshot(0), state.snapshot(0));
    }
    // As a stored snapshot whose digest matches (a foreign database).
    let sealed = Sealed {
        events: 0,
        digest: Digest::of_bytes(data),
        data: data.to_vec(),
    };
    if let Ok(snapshot) = sealed.open()
        && let Ok(mut state) = RunState::restore(Arc::clone(valid), setup(), snapshot)
    {
        drive(&mut state, &[Event::RunStarted { at: Millis(1) }]);
    }
});

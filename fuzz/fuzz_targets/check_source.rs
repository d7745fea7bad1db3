//! Any text, as YAML and as JSON, through loading, validation, planning and
//! rendering: nothing may panic, whatever the input.
#![no_main]

use baton_core::{Format, check_source, render};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for format in [Format::Yaml, Format::Json] {
        match check_source(&text, format) {
            Ok(valid) => {
                let plan = valid.plan();
                let _ = plan.report(valid.workflow());
                let _ = render::mermaid(valid.workflow(), valid.dag());
                let _ = render::dot(valid.workflow(), valid.dag());
            }
            Err(problems) => {
                for problem in &problems {
                    let _ = problem.to_string();
                    if let Some(location) = problem.location {
                        assert!(location.offset + location.length <= text.len() + 1);
                    }
                }
            }
        }
    }
});

//! Hostile templates over hostile JSON, as a trigger's input templates
//! render a webhook's body and a spec's templates render upstream
//! outputs: rendering must end (minijinja's fuel bounds loops, huge ranges
//! and deep recursion) with a value or an error, and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // The first line is the template, the rest the context, as JSON when
    // it is JSON.
    let (template, context) = text.split_once('\n').unwrap_or((&text, ""));
    let context: serde_json::Value = serde_json::from_str(context)
        .unwrap_or_else(|_| serde_json::json!({"body": context}));
    let _ = baton_core::run::render_value(&serde_json::Value::from(template), &context, "fuzzed");
    let nested = serde_json::json!({"a": [template, {"b": template}]});
    let _ = baton_core::run::render_value(&nested, &context, "fuzzed");
});

//! Source text to a [`Workflow`], collecting every problem on the way.
//!
//! A document is first read straight into its types, the fast path every
//! good spec takes. One that does not fit is read again, task by task: each
//! goes through a transient JSON value, then into its typed form, and a task
//! that does not fit is diagnosed field by field, so three bad fields give
//! three problems, and the other tasks still load and get checked. Syntax
//! errors stop the load; they are the only problems reported alone.

use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};
use serde_json::{Map, Value};

use crate::problem::{Code, Location, Path, Problem, Segment, did_you_mean};
use crate::source_map::Lines;
use crate::spec::{KIND_KEYS, TaskDoc, UniqueValue, Workflow, json_type, kind_count_problem};

/// The two spellings of a spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Yaml,
    Json,
}

impl Format {
    /// JSON for a `.json` file, YAML otherwise; text of unknown origin is
    /// JSON when it starts with `{`.
    pub fn detect(file_name: Option<&str>, text: &str) -> Format {
        match file_name
            .and_then(|name| name.rsplit_once('.'))
            .map(|(_, extension)| extension)
        {
            Some("json") => Format::Json,
            Some("yaml" | "yml") => Format::Yaml,
            _ if text.trim_start().starts_with('{') => Format::Json,
            _ => Format::Yaml,
        }
    }
}

/// What loading found: the workflow as far as it could be read, and problems.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Absent only when the text is not a workflow document at all.
    pub workflow: Option<Workflow>,
    pub problems: Vec<Problem>,
    /// Tasks present in the text that could not be loaded; checks that would
    /// report them as missing stay quiet about them.
    pub unloaded: Vec<String>,
}

/// Reads a workflow from YAML or JSON text: straight into its types, and
/// only when that fails, again field by field to say every problem where
/// it is. The two accept exactly the same documents.
pub fn load(text: &str, format: Format) -> Loaded {
    let typed = match format {
        Format::Json => serde_json::from_str::<Workflow>(text).ok(),
        Format::Yaml => serde_saphyr::from_str_with_options::<Workflow>(text, yaml_options()).ok(),
    };
    match typed {
        Some(workflow) => Loaded {
            workflow: Some(workflow),
            problems: Vec::new(),
            unloaded: Vec::new(),
        },
        None => diagnose(text, format),
    }
}

/// Duplicate keys reach the visitors, which report duplicate task ids as
/// problems; YAML 1.2 booleans only, so `run: y` is a string; size budgets
/// grow with big specs while alias and depth limits keep guarding against
/// bombs.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_events = usize::MAX;
    budget.max_nodes = usize::MAX;
    budget.max_total_scalar_bytes = usize::MAX;
    let mut options = serde_saphyr::Options::default();
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::PassThrough;
    options.strict_booleans = true;
    options.budget = Some(budget);
    options
}

/// Every problem of a document that does not load as it is.
fn diagnose(text: &str, format: Format) -> Loaded {
    let document = match format {
        Format::Json => {
            let mut deserializer = serde_json::Deserializer::from_str(text);
            RawDocument::deserialize(&mut deserializer)
                .and_then(|document| deserializer.end().map(|()| document))
                .map_err(|error| json_syntax_problem(text, &error))
        }
        Format::Yaml => serde_saphyr::from_str_with_options::<RawDocument>(text, yaml_options())
            .map_err(|error| yaml_syntax_problem(text, &error)),
    };
    match document {
        Ok(document) => document.into_loaded(),
        Err(problem) => Loaded {
            workflow: None,
            problems: vec![problem],
            unloaded: Vec::new(),
        },
    }
}

/// A top-level mapping: the `tasks` read task by task, everything else kept
/// as values until the end.
struct RawDocument {
    header: Map<String, Value>,
    tasks: RawTasks,
    problems: Vec<Problem>,
}

#[derive(Default)]
struct RawTasks {
    tasks: Vec<crate::spec::Task>,
    problems: Vec<Problem>,
    unloaded: Vec<String>,
}

impl RawDocument {
    fn into_loaded(self) -> Loaded {
        let RawDocument {
            header,
            tasks,
            mut problems,
        } = self;
        let workflow = match from_fields::<Workflow>(header, &Path::root()) {
            Ok(mut workflow) => {
                workflow.tasks = tasks.tasks;
                Some(workflow)
            }
            Err(header_problems) => {
                problems.extend(header_problems);
                None
            }
        };
        problems.extend(tasks.problems);
        Loaded {
            workflow,
            problems,
            unloaded: tasks.unloaded,
        }
    }
}

impl<'de> Deserialize<'de> for RawDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawDocument, D::Error> {
        struct DocumentVisitor;

        impl<'de> Visitor<'de> for DocumentVisitor {
            type Value = RawDocument;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a workflow: a mapping with `name` and `tasks`")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDocument, A::Error> {
                let mut document = RawDocument {
                    header: Map::new(),
                    tasks: RawTasks::default(),
                    problems: Vec::new(),
                };
                let mut seen_tasks = false;
                while let Some(key) = map.next_key::<String>()? {
                    let duplicate = if key == "tasks" {
                        std::mem::replace(&mut seen_tasks, true)
                    } else {
                        document.header.contains_key(&key)
                    };
                    if duplicate {
                        return Err(de::Error::custom(format!("duplicate key `{key}`")));
                    }
                    if key == "tasks" {
                        document.tasks = map.next_value()?;
                    } else {
                        let UniqueValue(value) = map.next_value()?;
                        document.header.insert(key, value);
                    }
                }
                Ok(document)
            }
        }

        deserializer.deserialize_map(DocumentVisitor)
    }
}

impl<'de> Deserialize<'de> for RawTasks {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawTasks, D::Error> {
        struct TasksVisitor;

        impl<'de> Visitor<'de> for TasksVisitor {
            type Value = RawTasks;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping from task id to task")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawTasks, A::Error> {
                let mut raw = RawTasks::default();
                raw.tasks.reserve(map.size_hint().unwrap_or(0));
                let mut seen = rustc_hash::FxHashSet::default();
                while let Some(id) = map.next_key::<String>()? {
                    let UniqueValue(value) = map.next_value()?;
                    if !seen.insert(id.clone()) {
                        raw.problems.push(
                            Problem::new(
                                Code::DuplicateTask,
                                Path::task(&id),
                                format!("task id `{id}` is used more than once"),
                            )
                            .at_key()
                            .with_help("give each task its own id"),
                        );
                        continue;
                    }
                    match task_from_value(id.clone(), value) {
                        Ok(task) => raw.tasks.push(task),
                        Err(problems) => {
                            raw.problems.extend(problems);
                            raw.unloaded.push(id);
                        }
                    }
                }
                Ok(raw)
            }
        }

        deserializer.deserialize_map(TasksVisitor)
    }
}

fn task_from_value(id: String, value: Value) -> Result<crate::spec::Task, Vec<Problem>> {
    let path = Path::task(&id);
    let Value::Object(fields) = value else {
        return Err(vec![Problem::new(
            Code::InvalidValue,
            path,
            format!("task `{id}` must be a mapping, not {}", json_type(&value)),
        )]);
    };
    let kinds: Vec<&str> = KIND_KEYS
        .iter()
        .copied()
        .filter(|kind| fields.contains_key(*kind))
        .collect();
    let kind_problem = kind_count_problem(&id, &kinds);
    match from_fields::<TaskDoc>(fields, &path) {
        Ok(doc) => doc.into_task(id),
        Err(mut problems) => {
            problems.extend(kind_problem);
            Err(problems)
        }
    }
}

/// Deserializes a mapping into `T`; when that fails, tries each field alone
/// so that every bad field is reported, not only the first.
fn from_fields<T: DeserializeOwned>(
    fields: Map<String, Value>,
    path: &Path,
) -> Result<T, Vec<Problem>> {
    let value = Value::Object(fields);
    let whole = match serde_path_to_error::deserialize::<_, T>(&value) {
        Ok(parsed) => return Ok(parsed),
        Err(error) => error,
    };
    let Value::Object(fields) = value else {
        unreachable!("built as an object above")
    };
    let mut problems = Vec::new();
    let mut good = Map::new();
    for (key, field) in fields {
        let single = Value::Object(Map::from_iter([(key.clone(), field)]));
        let problem = serde_path_to_error::deserialize::<_, T>(&single)
            .err()
            .map(|error| serde_problem(path, &error))
            .filter(|problem| problem.code != Code::MissingField);
        match problem {
            Some(problem) => problems.push(problem),
            None => {
                let Value::Object(single) = single else {
                    unreachable!("built as an object above")
                };
                good.extend(single);
            }
        }
    }
    // The fields that are fine on their own may still lack a required one.
    if let Err(error) = serde_path_to_error::deserialize::<_, T>(&Value::Object(good)) {
        problems.push(serde_problem(path, &error));
    }
    if problems.is_empty() {
        problems.push(serde_problem(path, &whole));
    }
    Err(problems)
}

/// A problem from a serde error inside a document, classified by what serde
/// says; serde's messages for unknown fields and variants are stable, and
/// their lists of expected names feed the "did you mean" help.
fn serde_problem(base: &Path, error: &serde_path_to_error::Error<serde_json::Error>) -> Problem {
    let mut path = base.clone();
    for segment in error.path().iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => path.push(Segment::Key(key.clone())),
            serde_path_to_error::Segment::Seq { index } => path.push(Segment::Index(*index)),
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {}
        }
    }
    let message = error.inner().to_string();
    if let Some((field, expected)) = unknown_name(&message, "unknown field `") {
        let problem =
            Problem::new(Code::UnknownField, path, format!("unknown field `{field}`")).at_key();
        return with_suggestion(problem, field, &expected, "fields");
    }
    if let Some((variant, expected)) = unknown_name(&message, "unknown variant `") {
        let problem = Problem::new(
            Code::InvalidValue,
            path,
            format!("unknown value `{variant}`"),
        );
        return with_suggestion(problem, variant, &expected, "values");
    }
    if let Some(field) = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        return Problem::new(Code::MissingField, path, format!("missing field `{field}`"));
    }
    let code = if message.starts_with("invalid duration") {
        Code::InvalidDuration
    } else {
        Code::InvalidValue
    };
    Problem::new(code, path, message)
}

fn with_suggestion(problem: Problem, word: &str, expected: &[&str], what: &str) -> Problem {
    match did_you_mean(word, expected.iter().copied()) {
        Some(suggestion) => problem.with_help(format!("did you mean `{suggestion}`?")),
        None if expected.is_empty() => problem,
        None => problem.with_help(format!("valid {what}: {}", expected.join(", "))),
    }
}

/// Splits serde's "unknown field `x`, expected one of `a`, `b`" into the
/// name and the expected names.
fn unknown_name<'m>(message: &'m str, prefix: &str) -> Option<(&'m str, Vec<&'m str>)> {
    let rest = message.strip_prefix(prefix)?;
    let (name, expected) = rest.split_once('`')?;
    let expected = expected.split('`').skip(1).step_by(2).collect();
    Some((name, expected))
}

fn json_syntax_problem(text: &str, error: &serde_json::Error) -> Problem {
    let message = strip_position_suffix(&error.to_string());
    let problem = Problem::new(Code::Syntax, Path::root(), message);
    match Lines::new(text).offset_of(text, error.line(), error.column()) {
        Some(offset) => problem.at(Location {
            line: error.line(),
            column: error.column().max(1),
            offset,
            length: 1,
        }),
        None => problem,
    }
}

/// A YAML limit a document passed, in words: the parser's own message is
/// Rust debug text.
fn over_budget(breach: &serde_saphyr::budget::BudgetBreach) -> String {
    use serde_saphyr::budget::BudgetBreach;
    const ALIASES: &str = "write the values out instead of expanding aliases this much";
    let (what, advice) = match breach {
        BudgetBreach::Aliases { aliases } => (format!("{aliases} aliases (`*name`)"), ALIASES),
        BudgetBreach::Anchors { anchors } => (format!("{anchors} anchors (`&name`)"), ALIASES),
        BudgetBreach::AliasAnchorRatio { aliases, anchors } => {
            (format!("{aliases} aliases for {anchors} anchors"), ALIASES)
        }
        BudgetBreach::RecordedAnchorEvents {
            recorded_anchor_events,
        } => (
            format!("{recorded_anchor_events} nodes expanded from aliases"),
            ALIASES,
        ),
        BudgetBreach::RecordedAnchorBytes {
            recorded_anchor_bytes,
        } => (
            format!("{recorded_anchor_bytes} bytes expanded from aliases"),
            ALIASES,
        ),
        BudgetBreach::MergeKeys { merge_keys } => {
            (format!("{merge_keys} merge keys (`<<`)"), ALIASES)
        }
        BudgetBreach::Depth { depth } => (
            format!("nesting {depth} levels deep"),
            "nest values less deeply (64 levels at most)",
        ),
        BudgetBreach::Documents { documents } => (
            format!("{documents} documents"),
            "a spec is one YAML document",
        ),
        BudgetBreach::InputBytes { input_bytes } => {
            (format!("{input_bytes} bytes"), "split the workflow")
        }
        // Events, nodes and scalar bytes are unbounded here (big specs are
        // welcome); what remains is named as the parser names it.
        other => (format!("{other:?}"), "simplify the document"),
    };
    format!("the document is over a limit that guards against YAML bombs: {what}; {advice}")
}

fn yaml_syntax_problem(text: &str, error: &serde_saphyr::Error) -> Problem {
    // The parser wraps errors in context (a snippet, an alias); the budget
    // breach is found beneath.
    let mut inner = error;
    while let serde_saphyr::Error::WithSnippet { error, .. }
    | serde_saphyr::Error::AliasError { error, .. } = inner
    {
        inner = error;
    }
    let message = match inner {
        serde_saphyr::Error::Budget { breach, .. } => over_budget(breach),
        _ => serde_saphyr::MessageFormatter::format_message(
            &serde_saphyr::DefaultMessageFormatter,
            error,
        )
        .into_owned(),
    };
    let problem = Problem::new(Code::Syntax, Path::root(), message);
    let Some(location) = error.location() else {
        return problem;
    };
    let (line, column) = (location.line() as usize, location.column() as usize);
    let offset = location
        .span()
        .byte_offset()
        .map(|offset| offset as usize)
        .or_else(|| Lines::new(text).offset_of(text, line, column));
    match offset {
        Some(offset) => problem.at(Location {
            line,
            column,
            offset: offset.min(text.len()),
            length: 1,
        }),
        None => problem,
    }
}

/// serde_json ends its messages with " at line L column C"; the location is
/// reported separately, so the message drops it.
fn strip_position_suffix(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(position) => message[..position].to_owned(),
        None => message.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskKind;

    fn codes(text: &str, format: Format) -> Vec<String> {
        load(text, format)
            .problems
            .iter()
            .map(|problem| format!("{} {}", problem.code, problem.path))
            .collect()
    }

    #[test]
    fn yaml_and_json_give_the_same_workflow() {
        let yaml =
            "name: w\ntasks:\n  a:\n    run: echo hi\n  b:\n    needs: [a]\n    noop: true\n";
        let json = r#"{"name": "w", "tasks": {"a": {"run": "echo hi"}, "b": {"needs": ["a"], "noop": true}}}"#;
        let from_yaml = load(yaml, Format::Yaml);
        let from_json = load(json, Format::Json);
        assert!(from_yaml.problems.is_empty(), "{:?}", from_yaml.problems);
        assert_eq!(from_yaml.workflow, from_json.workflow);
        let workflow = from_yaml.workflow.unwrap();
        assert!(matches!(workflow.tasks[1].kind, TaskKind::Noop));
    }

    #[test]
    fn a_yaml_limit_is_reported_in_words_not_debug_text() {
        let yaml = format!(
            "name: deep\ntasks:\n  t: {{noop: true}}\nx: {}{}\n",
            "[".repeat(100),
            "]".repeat(100)
        );
        let problems = load(&yaml, Format::Yaml).problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        let message = &problems[0].message;
        assert!(
            message.starts_with("the document is over a limit that guards against YAML bombs"),
            "{message}"
        );
        assert!(!message.contains('{'), "{message}");
    }

    #[test]
    fn every_bad_field_of_every_task_is_reported() {
        let yaml = "name: w\ntasks:\n  a:\n    run: x\n    nedes: [b]\n    timeout: 10x\n  b:\n    run: y\n    priority: high\n";
        assert_eq!(
            codes(yaml, Format::Yaml),
            [
                "unknown-field tasks.a.nedes",
                "invalid-duration tasks.a.timeout",
                "invalid-value tasks.b.priority"
            ]
        );
        let problems = load(yaml, Format::Yaml).problems;
        assert_eq!(problems[0].help.as_deref(), Some("did you mean `needs`?"));
    }

    #[test]
    fn duplicate_task_ids_are_reported_in_both_formats() {
        let yaml = "name: w\ntasks:\n  a: {noop: true}\n  a: {noop: true}\n";
        assert_eq!(codes(yaml, Format::Yaml), ["duplicate-task tasks.a"]);
        let json = r#"{"name": "w", "tasks": {"a": {"noop": true}, "a": {"noop": true}}}"#;
        assert_eq!(codes(json, Format::Json), ["duplicate-task tasks.a"]);
    }

    #[test]
    fn tasks_without_or_with_two_kinds_are_reported() {
        let yaml = "name: w\ntasks:\n  a: {needs: []}\n  b: {run: x, noop: true}\n";
        assert_eq!(
            codes(yaml, Format::Yaml),
            ["missing-kind tasks.a", "multiple-kinds tasks.b.noop"]
        );
    }

    #[test]
    fn syntax_errors_carry_a_location() {
        let problems = load("name: w\ntasks: [\n", Format::Yaml).problems;
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, Code::Syntax);
        assert!(problems[0].location.is_some());
        let problems = load("{\"name\": \"w\",\n \"tasks\": {]}", Format::Json).problems;
        assert_eq!(problems[0].location.map(|l| l.line), Some(2));
    }

    #[test]
    fn header_problems_do_not_hide_task_problems() {
        let yaml = "nme: w\ntasks:\n  a: {rn: x}\n";
        assert_eq!(
            codes(yaml, Format::Yaml),
            [
                "unknown-field nme",
                "missing-field ",
                "unknown-field tasks.a.rn",
                "missing-kind tasks.a"
            ]
        );
    }

    /// The example specs, as texts with their formats.
    fn examples() -> Vec<(String, Format)> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
        let mut texts = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.to_string_lossy().into_owned();
            if path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap();
                let format = Format::detect(Some(&name), &text);
                texts.push((text, format));
            }
        }
        assert!(texts.len() > 10);
        texts
    }

    /// Both readings of `text` agree: the typed one takes it exactly when
    /// the diagnosis finds nothing, and then to the same workflow.
    fn readings_agree(text: &str, format: Format) -> Result<(), String> {
        let typed = load(text, format);
        let diagnosed = diagnose(text, format);
        if diagnosed.problems.is_empty() {
            if typed.workflow != diagnosed.workflow || !typed.problems.is_empty() {
                return Err(format!("different workflows for:\n{text}"));
            }
        } else if typed.problems != diagnosed.problems {
            return Err(format!("the typed reading took:\n{text}"));
        }
        Ok(())
    }

    #[test]
    fn the_fast_reading_takes_every_example_and_agrees_with_the_diagnosis() {
        for (text, format) in examples() {
            assert!(load(&text, format).problems.is_empty());
            readings_agree(&text, format).unwrap();
        }
    }

    #[test]
    fn a_key_said_twice_in_a_free_form_map_is_refused_by_both_readings() {
        let yaml = "name: w\ntasks:\n  a:\n    run: x\n    env: {A: 1, A: 2}\n";
        assert!(!load(yaml, Format::Yaml).problems.is_empty());
        let json =
            r#"{"name": "w", "tasks": {"a": {"http": {"url": "u", "json": {"k": 1, "k": 2}}}}}"#;
        assert!(!load(json, Format::Json).problems.is_empty());
        readings_agree(json, Format::Json).unwrap();
    }

    proptest::proptest! {
        /// Any example with a line dropped, doubled or moved, or a value
        /// emptied: the fast path
        /// never takes what the diagnosis would refuse.
        #[test]
        fn both_readings_agree_on_damaged_examples(
            pick in 0usize..64,
            line in 0usize..256,
            other in 0usize..256,
            how in 0u8..6,
        ) {
            let examples = examples();
            let (text, format) = &examples[pick % examples.len()];
            let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
            let (line, other) = (line % lines.len(), other % lines.len());
            match how {
                0 => {
                    lines.remove(line);
                }
                1 => lines.insert(other, lines[line].clone()),
                2 => lines.swap(line, other),
                // A value replaced: by nothing, an empty mapping or list.
                _ => {
                    let value = ["null", "{}", "[]"][usize::from(how - 3)];
                    if let Some((key, _)) = lines[line].split_once(": ") {
                        lines[line] = format!("{key}: {value}");
                    }
                }
            }
            let damaged = lines.join("\n");
            readings_agree(&damaged, *format).map_err(proptest::test_runner::TestCaseError::fail)?;
        }
    }
}

//! Checks of single values that the types alone cannot express: numbers
//! that must be positive, choices that must contain the default, and so on.

use crate::problem::{Code, Path, Problem};
use crate::spec::{
    Approval, Backoff, Reduce, RetryPolicy, RunsOn, Schedule, Task, TaskKind, Timeout, Workflow,
};

/// `all_loaded` is false when some tasks of the source did not load (their
/// own problems say why): the workflow is then not empty, only broken.
pub(crate) fn workflow_problems(
    workflow: &Workflow,
    all_loaded: bool,
    problems: &mut Vec<Problem>,
) {
    let root = Path::root();
    if workflow.name.trim().is_empty() {
        problems.push(Problem::new(
            Code::InvalidSetting,
            root.clone().key("name"),
            "the workflow name is empty",
        ));
    }
    if workflow.tasks.is_empty() && all_loaded {
        problems.push(
            Problem::new(
                Code::InvalidSetting,
                root.clone().key("tasks"),
                "the workflow has no tasks: a run of it would do nothing and succeed",
            )
            .with_help("add a task under `tasks:`"),
        );
    }
    if workflow.concurrency == Some(0) {
        problems.push(
            Problem::new(
                Code::InvalidSetting,
                root.clone().key("concurrency"),
                "concurrency 0 would never run a task",
            )
            .with_help("remove it for no limit, or give a positive number"),
        );
    }
    for (key, limit) in &workflow.concurrency_limits {
        if *limit == 0 {
            problems.push(Problem::new(
                Code::InvalidSetting,
                root.clone().key("concurrency_limits").key(key.clone()),
                format!("a limit of 0 would never run a task keyed `{key}`"),
            ));
        }
    }
    if workflow.timeout.is_some_and(|timeout| timeout.is_zero()) {
        problems.push(Problem::new(
            Code::InvalidTimeout,
            root.clone().key("timeout"),
            "a run timeout of 0s ends every run at once",
        ));
    }
    for (name, input) in &workflow.inputs {
        if let Some(default) = &input.default
            && !input.kind.accepts(default)
        {
            problems.push(Problem::new(
                Code::InvalidInput,
                root.clone().key("inputs").key(name.clone()).key("default"),
                format!(
                    "the default of input `{name}` is not of type {}",
                    input.kind.name()
                ),
            ));
        }
    }
    if let Some(schedule) = &workflow.schedule {
        schedule_problems(workflow, schedule, root.clone().key("schedule"), problems);
    }
    if let Some(retry) = &workflow.defaults.retry {
        retry_problems(retry, root.clone().key("defaults").key("retry"), problems);
    }
    if let Some(timeout) = &workflow.defaults.timeout {
        timeout_problems(timeout, root.key("defaults").key("timeout"), problems);
    }
}

/// The longest task id: it names the task's log directory (with the run's
/// id and the attempt beside it), and file names stop at 255 bytes.
pub(crate) const MAX_TASK_ID: usize = 128;

pub(crate) fn task_problems(task: &Task, problems: &mut Vec<Problem>) {
    let path = || Path::task(&task.id);
    if !is_valid_id(&task.id) {
        problems.push(
            Problem::new(
                Code::InvalidTaskId,
                path(),
                format!("task id `{}` is not valid", task.id),
            )
            .at_key()
            .with_help("use letters, digits, `_` and `-`, starting with a letter or `_`"),
        );
    } else if task.id.len() > MAX_TASK_ID {
        problems.push(
            Problem::new(
                Code::InvalidTaskId,
                path(),
                format!(
                    "task id `{}…` is {} characters long; at most {MAX_TASK_ID}",
                    &task.id[..32],
                    task.id.len()
                ),
            )
            .at_key()
            .with_help("a task's id names its log directory, which file systems limit"),
        );
    }
    if let TaskKind::Mcp(mcp) = &task.kind {
        mcp_problems(mcp, path().key("mcp"), problems);
    }
    if let TaskKind::Agent(agent) = &task.kind {
        capability_problems(
            &agent.capability,
            path().key("agent").key("capability"),
            problems,
        );
    }
    if let Some(runs_on) = &task.modifiers().runs_on {
        runs_on_problems(task, runs_on, path().key("runs_on"), problems);
    }
    if let Some(retry) = &task.modifiers().retry {
        retry_problems(retry, path().key("retry"), problems);
    }
    if let Some(timeout) = &task.modifiers().timeout {
        timeout_problems(timeout, path().key("timeout"), problems);
    }
    for (index, pattern) in task.modifiers().artifacts.iter().enumerate() {
        if pattern.contains("{{") || pattern.contains("{%") {
            problems.push(
                Problem::new(
                    Code::InvalidSetting,
                    path().key("artifacts").index(index),
                    format!("`{pattern}` is a template, but artifacts are file patterns, read as written"),
                )
                .with_help("name the files (`dist/*.tar.gz`); a task that picks its files at run time writes them under one fixed directory"),
            );
        }
    }
    if let TaskKind::Run(script) = &task.kind
        && !script.is_literal()
        && super::heredoc::template_in_heredoc(script.as_str()).is_some()
    {
        problems.push(
            Problem::new(
                Code::InvalidSetting,
                path().key("run"),
                "a `{{ }}` inside a heredoc body would be written with the shell quotes \
                 that keep it one word (`VERSION=\"1.2.3\"`), or not expanded at all \
                 under a quoted delimiter",
            )
            .with_help(
                "pass the value through `env:` (`env: {VERSION: \"{{ inputs.v }}\"}`) and \
                 write `$VERSION` in the heredoc",
            ),
        );
    }
    match &task.kind {
        TaskKind::Approval(approval) => {
            approval_problems(approval, path().key("approval"), problems)
        }
        TaskKind::Http(http) if http.json.is_some() && http.body.is_some() => {
            problems.push(Problem::new(
                Code::InvalidSetting,
                path().key("http").key("body"),
                "an HTTP task sends `json` or `body`, not both",
            ))
        }
        TaskKind::Command(argv) if argv.is_empty() => problems.push(Problem::new(
            Code::InvalidSetting,
            path().key("command"),
            "a command needs at least the program to run",
        )),
        _ => {}
    }
    for (index, pattern) in task.modifiers().artifacts.iter().enumerate() {
        if let Some(problem) = artifact_problem(pattern) {
            problems.push(
                Problem::new(
                    Code::InvalidSetting,
                    path().key("artifacts").index(index),
                    format!("artifact `{pattern}` {problem}"),
                )
                .with_help("artifacts are paths or globs relative to the task's working directory"),
            );
        }
    }
    if let Some(foreach) = &task.modifiers().foreach
        && foreach.concurrency == Some(0)
    {
        problems.push(Problem::new(
            Code::InvalidSetting,
            path().key("foreach").key("concurrency"),
            "foreach concurrency 0 would never run an item",
        ));
    }
    if let Some(repeat) = &task.modifiers().repeat
        && repeat.max == 0
    {
        problems.push(Problem::new(
            Code::InvalidSetting,
            path().key("repeat").key("max"),
            "repeat max 0 would never run the task",
        ));
    }
    if let Some(swarm) = &task.modifiers().swarm {
        let size = if swarm.variants.is_empty() {
            swarm.count.unwrap_or(0)
        } else {
            swarm.variants.len() as u32
        };
        if size == 0 {
            problems.push(Problem::new(
                Code::InvalidSetting,
                path().key("swarm"),
                "a swarm needs `count` of at least 1 or a list of `variants`",
            ));
        }
        if let Reduce::Quorum(quorum) = swarm.reduce
            && (quorum == 0 || quorum > size)
        {
            problems.push(Problem::new(
                Code::InvalidSetting,
                path().key("swarm").key("reduce").key("quorum"),
                format!("a quorum of {quorum} cannot be met by a swarm of {size}"),
            ));
        }
    }
    if task.modifiers().escalate.as_deref() == Some(task.id.as_str()) {
        problems.push(Problem::new(
            Code::InvalidSetting,
            path().key("escalate"),
            "a task cannot escalate to itself",
        ));
    }
}

/// Task ids appear in templates (`tasks.NAME`), file names and URLs, so
/// they stay within a small alphabet.
pub(crate) fn is_valid_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
}

fn retry_problems(retry: &RetryPolicy, path: Path, problems: &mut Vec<Problem>) {
    let mut invalid = |field: &str, message: String| {
        problems.push(Problem::new(
            Code::InvalidRetry,
            path.clone().key(field),
            message,
        ));
    };
    if retry.max_attempts == 0 {
        invalid(
            "max_attempts",
            "max_attempts counts the first attempt too, so it is at least 1".to_owned(),
        );
    }
    if !(0.0..=1.0).contains(&retry.jitter) {
        invalid(
            "jitter",
            format!(
                "jitter is a fraction of the delay from 0 to 1, not {}",
                retry.jitter
            ),
        );
    }
    if retry.backoff == Backoff::Exponential
        && !(retry.multiplier.is_finite() && retry.multiplier >= 1.0)
    {
        invalid(
            "multiplier",
            format!(
                "an exponential multiplier below 1 would shrink delays ({})",
                retry.multiplier
            ),
        );
    }
    if let Some(max) = retry.max
        && max < retry.initial
    {
        invalid(
            "max",
            format!(
                "max delay {max} is shorter than the initial delay {}",
                retry.initial
            ),
        );
    }
}

fn timeout_problems(timeout: &Timeout, path: Path, problems: &mut Vec<Problem>) {
    if timeout.after.is_zero() {
        problems.push(Problem::new(
            Code::InvalidTimeout,
            path,
            "a timeout of 0s fails the task before it starts",
        ));
    }
}

fn approval_problems(approval: &Approval, path: Path, problems: &mut Vec<Problem>) {
    if approval.choices.is_empty() {
        problems.push(Problem::new(
            Code::InvalidApproval,
            path.clone().key("choices"),
            "an approval needs at least one choice",
        ));
    }
    for (index, choice) in approval.choices.iter().enumerate() {
        if approval.choices[..index].contains(choice) {
            problems.push(Problem::new(
                Code::InvalidApproval,
                path.clone().key("choices").index(index),
                format!("choice `{choice}` is listed twice"),
            ));
        }
    }
    match &approval.default {
        Some(default) if !approval.choices.contains(default) => problems.push(
            Problem::new(
                Code::InvalidApproval,
                path.key("default"),
                format!("default `{default}` is not one of the choices"),
            )
            .with_help(format!("choices: {}", approval.choices.join(", "))),
        ),
        None if approval.timeout.is_some() => problems.push(Problem::new(
            Code::InvalidApproval,
            path.key("timeout"),
            "an approval with a timeout needs a `default` to take when it expires",
        )),
        _ => {}
    }
}

/// Why an `artifacts:` entry cannot name files inside the task's directory.
fn artifact_problem(pattern: &str) -> Option<&'static str> {
    if pattern.trim().is_empty() {
        return Some("is empty");
    }
    let drive = pattern.as_bytes().get(1) == Some(&b':');
    if pattern.starts_with('/') || pattern.starts_with('\\') || drive {
        return Some("is absolute: it would escape the task's directory");
    }
    if pattern.split(['/', '\\']).any(|part| part == "..") {
        return Some("climbs out with `..`: it would escape the task's directory");
    }
    None
}

/// An `mcp` task names a program to start or a URL, and its arguments are a
/// mapping (a tool takes named arguments).
/// A capability names a queue of work and a `[agents.NAME]` table.
fn capability_problems(capability: &str, path: Path, problems: &mut Vec<Problem>) {
    if !crate::spec::is_capability(capability) {
        problems.push(
            Problem::new(
                Code::InvalidSetting,
                path,
                format!("capability `{capability}` is not a name a worker can offer"),
            )
            .with_help(
                "use 1 to 128 letters, digits, `_`, `-` and `.`, as in `summarize` or `gpu.build`",
            ),
        );
    }
}

/// `runs_on` sends a process (or a join point) to a worker; other kinds
/// either run where the run is driven (http, handlers, child runs,
/// approvals) or pick their server themselves (agents, MCP).
fn runs_on_problems(task: &Task, runs_on: &RunsOn, path: Path, problems: &mut Vec<Problem>) {
    if !matches!(
        task.kind,
        TaskKind::Run(_) | TaskKind::Command(_) | TaskKind::Noop
    ) {
        let help = match task.kind {
            TaskKind::Agent(_) => {
                "an agent task names its workers itself: move the capability and labels into `agent:`"
            }
            _ => "only `run`, `command` and `noop` tasks run on workers; remove `runs_on`",
        };
        problems.push(
            Problem::new(
                Code::InvalidSetting,
                path.clone(),
                format!("a `{}` task cannot run on a worker", task.kind.name()),
            )
            .at_key()
            .with_help(help),
        );
    }
    capability_problems(&runs_on.capability, path.key("capability"), problems);
}

fn mcp_problems(mcp: &crate::spec::McpTask, path: Path, problems: &mut Vec<Problem>) {
    match &mcp.server {
        crate::spec::McpServer::Command { command } if command.is_empty() => {
            problems.push(Problem::new(
                Code::InvalidSetting,
                path.clone().key("server").key("command"),
                "the server's command is empty: give the program to start and its arguments",
            ));
        }
        crate::spec::McpServer::Url { url }
            if !(url.starts_with("http://") || url.starts_with("https://")) =>
        {
            problems.push(Problem::new(
                Code::InvalidSetting,
                path.clone().key("server").key("url"),
                format!("`{url}` is not an http:// or https:// URL"),
            ));
        }
        _ => {}
    }
    if mcp
        .arguments
        .as_ref()
        .is_some_and(|arguments| !arguments.is_object())
    {
        problems.push(Problem::new(
            Code::InvalidSetting,
            path.key("arguments"),
            "a tool's arguments are a mapping of names to values",
        ));
    }
}

/// A schedule that could never fire, or whose runs could never start.
fn schedule_problems(
    workflow: &Workflow,
    schedule: &Schedule,
    at: Path,
    problems: &mut Vec<Problem>,
) {
    for error in crate::timetable::Timetable::errors(schedule) {
        match error {
        error @ crate::timetable::ScheduleError::Cron { .. } => problems.push(
            Problem::new(Code::InvalidSchedule, at.clone().key("cron"), error.to_string())
                .with_help("five fields: minute hour day-of-month month day-of-week, e.g. `0 2 * * *` for 02:00 daily"),
        ),
        error @ crate::timetable::ScheduleError::Zone(_) => problems.push(Problem::new(
            Code::InvalidSchedule,
            at.clone().key("timezone"),
            error.to_string(),
        )),
        }
    }
    for (name, value) in &schedule.inputs {
        let place = at.clone().key("inputs").key(name.clone());
        match workflow.inputs.get(name) {
            None => problems.push(
                Problem::new(
                    Code::UndeclaredInput,
                    place,
                    format!(
                        "the schedule gives input `{name}`, which the workflow does not declare"
                    ),
                )
                .with_help("declare it under `inputs:`, or remove it from the schedule"),
            ),
            Some(input) if !input.kind.accepts(value) => problems.push(Problem::new(
                Code::InvalidSchedule,
                place,
                format!(
                    "the schedule's input `{name}` is not of type {}",
                    input.kind.name()
                ),
            )),
            Some(_) if name == "tick" => problems.push(Problem::new(
                Code::InvalidSchedule,
                place,
                "input `tick` receives each tick's time; the schedule cannot set it",
            )),
            Some(_) => {}
        }
    }
    for (name, input) in &workflow.inputs {
        if name != "tick" && input.default.is_none() && !schedule.inputs.contains_key(name) {
            problems.push(
                Problem::new(
                    Code::MissingInput,
                    at.clone(),
                    format!("the schedule's runs need input `{name}`, which has no default"),
                )
                .with_help("give it under `schedule.inputs`, or give the input a default"),
            );
        }
    }
    if let Some(tick) = workflow.inputs.get("tick")
        && !tick
            .kind
            .accepts(&serde_json::Value::from("2026-11-01T02:00:00+01:00"))
    {
        problems.push(Problem::new(
            Code::InvalidSchedule,
            Path::root().key("inputs").key("tick"),
            format!(
                "input `tick` receives each scheduled run's time as a string, but is declared {}",
                tick.kind.name()
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_allow_letters_digits_underscores_and_dashes() {
        for id in ["build", "build-app", "_x", "t123", "A_b-C"] {
            assert!(is_valid_id(id), "{id}");
        }
        for id in ["", "1st", "-x", "a b", "a.b", "ünï"] {
            assert!(!is_valid_id(id), "{id}");
        }
    }

    /// The messages of a one-task workflow's problems.
    fn problems(task: &str) -> Vec<String> {
        let source = format!("name: m\ninputs: {{region: {{default: eu}}}}\ntasks:\n  t: {task}\n");
        match crate::check_source(&source, crate::Format::Yaml) {
            Ok(_) => Vec::new(),
            Err(problems) => problems
                .into_iter()
                .map(|problem| problem.message)
                .collect(),
        }
    }

    #[test]
    fn runs_on_sends_processes_and_join_points_to_a_named_capability() {
        assert!(
            problems(
                "{run: make, runs_on: {capability: build, labels: {region: '{{ inputs.region }}'}}}"
            )
            .is_empty()
        );
        assert!(problems("{command: [make], runs_on: {capability: gpu.build}}").is_empty());
        assert!(problems("{noop: true, runs_on: {capability: build}}").is_empty());
        assert_eq!(
            problems("{http: {url: 'http://x'}, runs_on: {capability: build}}"),
            ["a `http` task cannot run on a worker"]
        );
        assert_eq!(
            problems("{agent: {capability: review}, runs_on: {capability: build}}"),
            ["a `agent` task cannot run on a worker"]
        );
        assert_eq!(
            problems("{run: make, runs_on: {capability: 'a b'}}"),
            ["capability `a b` is not a name a worker can offer"]
        );
        assert_eq!(
            problems("{agent: {capability: ''}}"),
            ["capability `` is not a name a worker can offer"]
        );
        assert!(
            problems(
                "{run: make, runs_on: {capability: build, labels: {region: '{{ inputs.zone }}'}}}"
            )
            .iter()
            .any(|problem| problem.contains("zone")),
            "label templates are checked like any other"
        );
    }

    #[test]
    fn an_mcp_task_needs_a_program_or_a_web_url_and_mapped_arguments() {
        assert!(
            problems("{mcp: {server: {command: [srv]}, tool: echo, arguments: {a: 1}}}").is_empty()
        );
        assert!(problems("{mcp: {server: {url: 'https://x.example/mcp'}, tool: echo}}").is_empty());
        assert_eq!(
            problems("{mcp: {server: {command: []}, tool: echo}}"),
            ["the server's command is empty: give the program to start and its arguments"]
        );
        assert_eq!(
            problems("{mcp: {server: {url: 'file:///etc/passwd'}, tool: echo}}"),
            ["`file:///etc/passwd` is not an http:// or https:// URL"]
        );
        assert_eq!(
            problems("{mcp: {server: {command: [srv]}, tool: echo, arguments: [1]}}"),
            ["a tool's arguments are a mapping of names to values"]
        );
        assert_eq!(
            problems("{mcp: {server: {path: x}, tool: echo}}"),
            ["an MCP server is `{command: [program, args...]}` or `{url: \"https://...\"}`"],
            "a task that did not load leaves the workflow broken, not empty"
        );
    }
}

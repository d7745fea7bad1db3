//! Templates and expressions: do they parse, and do the names they use exist
//! where they are used?
//!
//! A template may read `inputs.NAME` (declared inputs only) and
//! `tasks.NAME.output` (ancestors only, so reading is never a race), plus the
//! variables its place provides: `item` and `index` under `foreach`, `output`
//! in `check`, `repeat.until` and `compensate`, and so on.

use minijinja::Environment;
use minijinja::machinery::{Token, tokenize};
use minijinja::syntax::SyntaxConfig;

use crate::problem::{Code, Path, Problem, did_you_mean};
use crate::spec::{Action, HttpRequest, Task, TaskKind, Template, Workflow};

/// Variables every template of a task may use.
const BASE: &[&str] = &["inputs", "tasks", "run", "task", "params"];
/// Globals minijinja provides.
const GLOBALS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

/// One piece of templated text and what it may see.
pub(crate) struct Site<'a> {
    pub(crate) text: &'a str,
    pub(crate) path: Path,
    pub(crate) expression: bool,
    /// Variables this place adds to [`BASE`].
    pub(crate) extra: &'static [&'static str],
}

/// A `tasks.NAME`, `inputs.NAME` or `params.NAME` found in a site.
pub(crate) enum Reference {
    Task { name: String, path: Path },
    Input { name: String, path: Path },
    Param { name: String, path: Path },
}

/// Parses every site, reporting syntax errors and unknown variables, and
/// returns the task and input references for the caller to resolve.
pub(crate) fn scan(
    env: &Environment<'_>,
    sites: &[Site<'_>],
    problems: &mut Vec<Problem>,
) -> Vec<Reference> {
    let mut references = Vec::new();
    for site in sites {
        let undeclared = if site.expression {
            env.compile_expression(site.text)
                .map(|expression| expression.undeclared_variables(false))
        } else {
            env.template_from_str(site.text)
                .map(|template| template.undeclared_variables(false))
        };
        let undeclared = match undeclared {
            Ok(undeclared) => undeclared,
            Err(error) => {
                let (code, what) = if site.expression {
                    (Code::ExpressionSyntax, "expression")
                } else {
                    (Code::TemplateSyntax, "template")
                };
                let detail = error
                    .detail()
                    .map_or_else(|| error.kind().to_string(), str::to_owned);
                problems.push(Problem::new(
                    code,
                    site.path.clone(),
                    format!("{what} does not parse: {detail}"),
                ));
                continue;
            }
        };
        let mut unknown: Vec<&String> = undeclared
            .iter()
            .filter(|name| {
                !BASE.contains(&name.as_str())
                    && !site.extra.contains(&name.as_str())
                    && !GLOBALS.contains(&name.as_str())
            })
            .collect();
        unknown.sort();
        for name in unknown {
            let known = BASE.iter().chain(site.extra).copied();
            let problem = Problem::new(
                Code::UnknownVariable,
                site.path.clone(),
                format!("unknown variable `{name}`"),
            );
            problems.push(match did_you_mean(name, known) {
                Some(suggestion) => problem.with_help(format!("did you mean `{suggestion}`?")),
                None => problem.with_help(format!(
                    "available here: {}",
                    BASE.iter()
                        .chain(site.extra)
                        .copied()
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            });
        }
        references_in(site, &mut references, problems);
    }
    references
}

/// The tasks `task`'s templates read, each once, in first-use order; for
/// a valid workflow they are all ancestors of `task`.
pub(crate) fn task_references(task: &Task) -> Vec<String> {
    let mut references = Vec::new();
    let mut ignored = Vec::new();
    for site in task_sites(task) {
        references_in(&site, &mut references, &mut ignored);
    }
    let mut names: Vec<String> = Vec::new();
    for reference in references {
        if let Reference::Task { name, .. } = reference
            && !names.contains(&name)
        {
            names.push(name);
        }
    }
    names
}

/// Finds `tasks.NAME`, `tasks['NAME']` and the same for `inputs` in the
/// token stream; any other use of those roots is a computed name that no
/// check could follow.
fn references_in(site: &Site<'_>, references: &mut Vec<Reference>, problems: &mut Vec<Problem>) {
    let tokens: Vec<Token<'_>> = tokenize(site.text, site.expression, SyntaxConfig::default())
        .map_while(Result::ok)
        .map(|(token, _)| token)
        .collect();
    for (at, token) in tokens.iter().enumerate() {
        let Token::Ident(root @ ("tasks" | "inputs" | "params")) = token else {
            continue;
        };
        if at > 0 && matches!(tokens[at - 1], Token::Dot) {
            continue;
        }
        let name = match (tokens.get(at + 1), tokens.get(at + 2), tokens.get(at + 3)) {
            (Some(Token::Dot), Some(Token::Ident(name)), _) => Some(name.to_string()),
            (Some(Token::BracketOpen), Some(Token::Str(name)), Some(Token::BracketClose)) => {
                Some(name.to_string())
            }
            (Some(Token::BracketOpen), Some(Token::String(name)), Some(Token::BracketClose)) => {
                Some(name.to_string())
            }
            _ => None,
        };
        match (name, *root) {
            (Some(name), "tasks") => references.push(Reference::Task {
                name,
                path: site.path.clone(),
            }),
            (Some(name), "inputs") => references.push(Reference::Input {
                name,
                path: site.path.clone(),
            }),
            (Some(name), _) => references.push(Reference::Param {
                name,
                path: site.path.clone(),
            }),
            (None, root) => problems.push(
                Problem::new(
                    Code::DynamicReference,
                    site.path.clone(),
                    format!("`{root}` is used without naming one of its entries"),
                )
                .with_help(format!(
                    "write `{root}.NAME` or `{root}['NAME']` so the reference can be checked"
                )),
            ),
        }
    }
}

/// Every templated place of a task.
pub(crate) fn task_sites(task: &Task) -> Vec<Site<'_>> {
    let mut sites = Vec::new();
    // Built on demand: most tasks have no templated field, and a large
    // spec should not pay for paths it never reports.
    let base = || Path::task(&task.id);
    let scope: &'static [&'static str] = match (
        task.modifiers().foreach.is_some(),
        task.modifiers().repeat.is_some(),
        task.modifiers().swarm.is_some(),
    ) {
        (true, _, _) => &["item", "index"],
        (_, true, _) => &["previous", "iteration"],
        (_, _, true) => &["variant"],
        _ => &[],
    };
    match &task.kind {
        TaskKind::Run(script) => push_template(&mut sites, script, base().key("run"), scope),
        TaskKind::Command(argv) => {
            for (index, argument) in argv.iter().enumerate() {
                push_template(
                    &mut sites,
                    argument,
                    base().key("command").index(index),
                    scope,
                );
            }
        }
        TaskKind::Http(http) => http_sites(&mut sites, http, base().key("http"), scope),
        TaskKind::Agent(agent) => {
            if let Some(prompt) = &agent.prompt {
                push_template(&mut sites, prompt, base().key("agent").key("prompt"), scope);
            }
            if let Some(input) = &agent.input {
                json_sites(&mut sites, input, base().key("agent").key("input"), scope);
            }
            for (name, value) in &agent.labels {
                let path = base().key("agent").key("labels").key(name.clone());
                push_template(&mut sites, value, path, scope);
            }
            if let Some(key) = &agent.fairness_key {
                push_template(
                    &mut sites,
                    key,
                    base().key("agent").key("fairness_key"),
                    scope,
                );
            }
        }
        TaskKind::Approval(approval) => push_template(
            &mut sites,
            &approval.prompt,
            base().key("approval").key("prompt"),
            scope,
        ),
        TaskKind::Workflow(child) => {
            for (name, value) in &child.inputs {
                json_sites(
                    &mut sites,
                    value,
                    base().key("workflow").key("inputs").key(name.clone()),
                    scope,
                );
            }
        }
        TaskKind::Uses(template) => {
            for (name, value) in &template.with {
                json_sites(
                    &mut sites,
                    value,
                    base().key("with").key(name.clone()),
                    scope,
                );
            }
        }
        TaskKind::Mcp(mcp) => {
            if let Some(arguments) = &mcp.arguments {
                json_sites(
                    &mut sites,
                    arguments,
                    base().key("mcp").key("arguments"),
                    scope,
                );
            }
        }
        TaskKind::Noop | TaskKind::Handler(_) => {}
    }
    for (name, value) in &task.modifiers().params {
        json_sites(
            &mut sites,
            value,
            base().key("params").key(name.clone()),
            scope,
        );
    }
    for (name, value) in &task.modifiers().env {
        push_template(
            &mut sites,
            value,
            base().key("env").key(name.clone()),
            scope,
        );
    }
    if let Some(cwd) = &task.modifiers().cwd {
        push_template(&mut sites, cwd, base().key("cwd"), scope);
    }
    if let Some(when) = &task.modifiers().when {
        sites.push(Site {
            text: when.as_str(),
            path: base().key("when"),
            expression: true,
            extra: scope,
        });
    }
    if let Some(foreach) = &task.modifiers().foreach {
        push_template(
            &mut sites,
            &foreach.items,
            base().key("foreach").key("items"),
            &[],
        );
    }
    if let Some(repeat) = &task.modifiers().repeat {
        sites.push(Site {
            text: repeat.until.as_str(),
            path: base().key("repeat").key("until"),
            expression: true,
            extra: &["output", "previous", "iteration"],
        });
    }
    for (index, check) in task.modifiers().check.iter().enumerate() {
        sites.push(Site {
            text: check.expr.as_str(),
            path: base().key("check").index(index),
            expression: true,
            extra: &["output", "attempt"],
        });
    }
    if let Some(cache) = &task.modifiers().cache
        && let Some(key) = &cache.key
    {
        push_template(&mut sites, key, base().key("cache").key("key"), scope);
    }
    if let Some(key) = &task.modifiers().concurrency_key {
        push_template(&mut sites, key, base().key("concurrency_key"), scope);
    }
    if let Some(runs_on) = &task.modifiers().runs_on {
        for (name, value) in &runs_on.labels {
            let path = base().key("runs_on").key("labels").key(name.clone());
            push_template(&mut sites, value, path, scope);
        }
        if let Some(key) = &runs_on.fairness_key {
            push_template(
                &mut sites,
                key,
                base().key("runs_on").key("fairness_key"),
                scope,
            );
        }
    }
    if let Some(action) = &task.modifiers().compensate {
        action_sites(&mut sites, action, base().key("compensate"), &["output"]);
    }
    if let Some(swarm) = &task.modifiers().swarm
        && let crate::spec::Reduce::Template(reduce) = &swarm.reduce
    {
        push_template(
            &mut sites,
            reduce,
            base().key("swarm").key("reduce").key("template"),
            &["outputs"],
        );
    }
    if let Some(hooks) = &task.modifiers().hooks {
        for (event, index, action) in hooks.actions() {
            action_sites(
                &mut sites,
                action,
                base().key("hooks").key(event).index(index),
                &["event"],
            );
        }
    }
    sites
}

/// Templated places of the workflow itself (its hooks).
pub(crate) fn workflow_sites(workflow: &Workflow) -> Vec<Site<'_>> {
    let mut sites = Vec::new();
    if let Some(hooks) = &workflow.hooks {
        for (event, index, action) in hooks.actions() {
            action_sites(
                &mut sites,
                action,
                Path::root().key("hooks").key(event).index(index),
                &["event"],
            );
        }
    }
    sites
}

fn push_template<'a>(
    sites: &mut Vec<Site<'a>>,
    template: &'a Template,
    path: Path,
    extra: &'static [&'static str],
) {
    if !template.is_literal() {
        sites.push(Site {
            text: template.as_str(),
            path,
            expression: false,
            extra,
        });
    }
}

fn http_sites<'a>(
    sites: &mut Vec<Site<'a>>,
    http: &'a HttpRequest,
    path: Path,
    extra: &'static [&'static str],
) {
    push_template(sites, &http.url, path.clone().key("url"), extra);
    for (name, value) in &http.headers {
        push_template(
            sites,
            value,
            path.clone().key("headers").key(name.clone()),
            extra,
        );
    }
    if let Some(body) = &http.body {
        push_template(sites, body, path.clone().key("body"), extra);
    }
    if let Some(json) = &http.json {
        json_sites(sites, json, path.key("json"), extra);
    }
}

fn action_sites<'a>(
    sites: &mut Vec<Site<'a>>,
    action: &'a Action,
    path: Path,
    extra: &'static [&'static str],
) {
    match action {
        Action::Run(script) => push_template(sites, script, path.key("run"), extra),
        Action::Command(argv) => {
            for (index, argument) in argv.iter().enumerate() {
                push_template(
                    sites,
                    argument,
                    path.clone().key("command").index(index),
                    extra,
                );
            }
        }
        Action::Http(http) => http_sites(sites, http, path.key("http"), extra),
    }
}

/// The strings inside a JSON value are templates.
fn json_sites<'a>(
    sites: &mut Vec<Site<'a>>,
    value: &'a serde_json::Value,
    path: Path,
    extra: &'static [&'static str],
) {
    match value {
        serde_json::Value::String(text) => {
            if crate::spec::is_literal(text) {
                return;
            }
            sites.push(Site {
                text,
                path,
                expression: false,
                extra,
            });
        }
        serde_json::Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                json_sites(sites, item, path.clone().index(index), extra);
            }
        }
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                json_sites(sites, item, path.clone().key(key.clone()), extra);
            }
        }
        _ => {}
    }
}

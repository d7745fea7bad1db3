//! What an attempt runs: a task's templates evaluated over the run's
//! state (its inputs, the outputs of the tasks it reads, the attempt), and
//! the judgements made on an attempt's output (`check`, `repeat`).

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::sync::Arc;

use minijinja::Value;

use crate::check::task_references;
use crate::spec::{Action, HttpRequest, Task, TaskKind, Template};

use super::super::event::{Failure, FailureKind};
use super::super::resolve::{
    AgentCall, ChildRun, ChildWorkflow, HttpBody, HttpCall, McpCall, Resolved, Route, Work,
};
use super::super::templates::{self, ShellScript, TemplateError};
use super::{NONE, RunState};

/// Where a `repeat` loop stands after an iteration succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Iteration {
    /// `until` holds (or the task does not repeat): the task succeeds.
    Done,
    /// Run it again, with this output as `previous`.
    Again,
}

/// Renders the fields of one task, building its template context only if a
/// field is not a literal (most are not templated at all).
pub(crate) struct Scope<'a> {
    state: &'a RunState,
    task: u32,
    attempt: u32,
    compensation: bool,
    context: OnceCell<Value>,
}

impl<'a> Scope<'a> {
    pub(crate) fn new(state: &'a RunState, task: u32, attempt: u32, compensation: bool) -> Self {
        Scope {
            state,
            task,
            attempt,
            compensation,
            context: OnceCell::new(),
        }
    }

    /// A scope over a context made elsewhere (a hook's): the task fields
    /// are never read, as the context is already there.
    pub(crate) fn given(state: &'a RunState, context: Value) -> Self {
        let scope = Scope::new(state, 0, 0, false);
        let _ = scope.context.set(context);
        scope
    }

    /// What an action (`compensate`, a hook) does, rendered; `what` names
    /// it in errors.
    pub(crate) fn action(&self, action: &Action, what: &str) -> Result<Work, TemplateError> {
        Ok(match action {
            Action::Run(script) => Work::Shell(self.shell(script.as_str())?),
            Action::Command(argv) => Work::Command(
                argv.iter()
                    .map(|argument| self.text(argument.as_str(), what))
                    .collect::<Result<_, _>>()?,
            ),
            Action::Http(http) => Work::Http(Box::new(self.http(http)?)),
        })
    }

    pub(crate) fn context(&self) -> &Value {
        self.context.get_or_init(|| {
            self.state
                .context(self.task, self.attempt, self.compensation)
        })
    }

    pub(crate) fn text(&self, text: &str, what: &str) -> Result<String, TemplateError> {
        if crate::spec::is_literal(text) {
            return Ok(text.to_owned());
        }
        templates::render(text, self.context(), what)
    }

    pub(crate) fn shell(&self, text: &str) -> Result<ShellScript, TemplateError> {
        if crate::spec::is_literal(text) {
            return Ok(ShellScript {
                script: text.to_owned(),
                values: Vec::new(),
            });
        }
        templates::shell_script(text, self.context())
    }

    pub(crate) fn json(
        &self,
        value: &serde_json::Value,
        what: &str,
    ) -> Result<serde_json::Value, TemplateError> {
        templates::render_json(value, self.context(), what)
    }

    pub(crate) fn http(&self, http: &HttpRequest) -> Result<HttpCall, TemplateError> {
        let body = match (&http.json, &http.body) {
            (Some(json), _) => {
                HttpBody::Json(templates::render_json(json, self.context(), "http.json")?)
            }
            (None, Some(body)) => HttpBody::Text(self.text(body.as_str(), "http.body")?),
            (None, None) => HttpBody::Empty,
        };
        Ok(HttpCall {
            method: http.method,
            url: self.text(http.url.as_str(), "http.url")?,
            headers: http
                .headers
                .iter()
                .map(|(name, value)| Ok((name.clone(), self.text(value.as_str(), "http.headers")?)))
                .collect::<Result<_, TemplateError>>()?,
            body,
            expect: http.expect.clone(),
        })
    }

    /// The workers that may run the task, its labels rendered.
    fn route(
        &self,
        capability: &str,
        labels: &BTreeMap<String, Template>,
        fairness_key: Option<&Template>,
        what: &str,
    ) -> Result<Route, TemplateError> {
        let labels_at = format!("{what}.labels");
        Ok(Route {
            capability: capability.to_owned(),
            labels: labels
                .iter()
                .map(|(name, value)| Ok((name.clone(), self.text(value.as_str(), &labels_at)?)))
                .collect::<Result<_, TemplateError>>()?,
            fairness_key: fairness_key
                .map(|key| self.text(key.as_str(), &format!("{what}.fairness_key")))
                .transpose()?,
            priority: 0,
        })
    }

    pub(crate) fn finish(&self, task: &Task, work: Work) -> Result<Resolved, TemplateError> {
        Ok(Resolved {
            env: task
                .modifiers()
                .env
                .iter()
                .map(|(name, value)| Ok((name.clone(), self.text(value.as_str(), "env")?)))
                .collect::<Result<_, TemplateError>>()?,
            cwd: task
                .modifiers()
                .cwd
                .as_ref()
                .map(|cwd| self.text(cwd.as_str(), "cwd"))
                .transpose()?,
            work,
            route: None,
        })
    }
}

impl RunState {
    /// The template context of `task`: `inputs`, the tasks it reads,
    /// `run`, `task`, and for compensation its own `output`.
    pub(crate) fn context(&self, task: u32, attempt: u32, compensation: bool) -> Value {
        let names = self.valid.names();
        let tasks: std::collections::BTreeMap<String, Value> = task_references(self.task(task))
            .into_iter()
            .filter_map(|name| {
                let index = *names.get(name.as_str())?;
                let view = minijinja::context! {
                    output => self.progress.outputs[index as usize].clone().unwrap_or(Value::UNDEFINED),
                    status => self.progress.status[index as usize].name(),
                    // What an escalation target is handed: why it failed.
                    failure => self.progress.failures.get(&index).map(|failure| failure.message.clone()),
                };
                Some((name, view))
            })
            .collect();
        // A retry sees why the attempt before it failed (a quality gate's
        // message, an exit code's log tail).
        let failure = (attempt > 1)
            .then(|| self.progress.failures.get(&task))
            .flatten()
            .map(|failure| failure.message.clone());
        let own = minijinja::context! {
            id => self.task(task).id.as_str(),
            attempt => attempt,
            failure => failure,
        };
        let output = if compensation {
            self.progress.outputs[task as usize]
                .clone()
                .unwrap_or(Value::UNDEFINED)
        } else {
            Value::UNDEFINED
        };
        // A `repeat` task sees the iteration it is on and the output of the
        // one before (undefined on the first).
        let (previous, iteration) = match self.task(task).modifiers().repeat {
            Some(_) if !compensation => (
                match self.progress.iterations.get(&task) {
                    Some(_) => self.progress.outputs[task as usize]
                        .clone()
                        .unwrap_or(Value::UNDEFINED),
                    None => Value::UNDEFINED,
                },
                Value::from(self.iteration_number(task)),
            ),
            _ => (Value::UNDEFINED, Value::UNDEFINED),
        };
        let context = minijinja::context! {
            inputs => self.inputs.clone(),
            tasks => Value::from(tasks),
            run => self.run_context.clone(),
            task => own,
            output => output,
            previous => previous,
            iteration => iteration,
        };
        let params = &self.task(task).modifiers().params;
        if params.is_empty() {
            return context;
        }
        // Parameters are templates over the rest of the context; one that
        // does not render is left undefined, and the field using it fails
        // to render with the reason.
        let params: std::collections::BTreeMap<&str, Value> = params
            .iter()
            .map(|(name, value)| {
                let rendered = templates::render_json(value, &context, "params")
                    .map_or(Value::UNDEFINED, |value| {
                        Value::from(minijinja::value::Serde(value))
                    });
                (name.as_str(), rendered)
            })
            .collect();
        minijinja::context! { params => Value::from(params), ..context }
    }

    /// What attempt `attempt` of `task` runs, with every template evaluated.
    /// Whether an attempt's `output` passes the task's `check`: the first
    /// expression that does not hold fails the attempt with its message (a
    /// `check` failure, which `retry.on: [check]` retries); one that does
    /// not evaluate is a template failure, never retried.
    pub fn check_output(
        &self,
        task: u32,
        attempt: u32,
        output: Option<&serde_json::Value>,
    ) -> Result<(), Failure> {
        let checks = &self.task(task).modifiers().check;
        if checks.is_empty() {
            return Ok(());
        }
        let output = output.map_or(Value::UNDEFINED, |output| {
            Value::from(minijinja::value::Serde(output))
        });
        let context = minijinja::context! {
            output => output,
            attempt => attempt,
            ..self.context(task, attempt, false)
        };
        for check in checks {
            match templates::condition(check.expr.as_str(), &context, "check") {
                Ok(true) => {}
                Ok(false) => {
                    let message = check.message.clone().unwrap_or_else(|| {
                        format!("check `{}` does not hold", check.expr.as_str())
                    });
                    return Err(Failure::new(FailureKind::Check, message));
                }
                Err(error) => return Err(Failure::new(FailureKind::Template, error.to_string())),
            }
        }
        Ok(())
    }

    /// What an attempt of a `repeat` task that produced `output` means: the
    /// loop is done (`until` holds), goes round again, or has run `max`
    /// iterations (a `repeat` failure, never retried). A task without
    /// `repeat` is always done; an `until` that does not evaluate fails it.
    pub fn iteration(
        &self,
        task: u32,
        attempt: u32,
        output: Option<&serde_json::Value>,
    ) -> Result<Iteration, Failure> {
        let Some(repeat) = &self.task(task).modifiers().repeat else {
            return Ok(Iteration::Done);
        };
        let context = minijinja::context! {
            output => output.map_or(Value::UNDEFINED, |output| Value::from(minijinja::value::Serde(output))),
            ..self.context(task, attempt, false)
        };
        match templates::condition(repeat.until.as_str(), &context, "repeat.until") {
            Ok(true) => Ok(Iteration::Done),
            Ok(false) if self.iteration_number(task) < repeat.max => Ok(Iteration::Again),
            Ok(false) => Err(Failure::new(
                FailureKind::Repeat,
                format!(
                    "`{}` did not hold after {} iteration(s)",
                    repeat.until.as_str(),
                    repeat.max
                ),
            )),
            Err(error) => Err(Failure::new(FailureKind::Template, error.to_string())),
        }
    }

    /// The iteration a `repeat` task is on, from 1.
    fn iteration_number(&self, task: u32) -> u32 {
        self.progress.iterations.get(&task).copied().unwrap_or(0) + 1
    }

    /// Renders one of `task`'s templates (`what` names it in errors) as it
    /// would render for attempt `attempt` now.
    pub fn render(
        &self,
        task: u32,
        attempt: u32,
        text: &str,
        what: &str,
    ) -> Result<String, TemplateError> {
        Scope::new(self, task, attempt, false).text(text, what)
    }

    pub fn resolve(&self, task: u32, attempt: u32) -> Result<Resolved, TemplateError> {
        self.resolve_in(&Scope::new(self, task, attempt, false), task)
    }

    /// The run's `concurrency`, if it has one.
    pub(crate) fn concurrency_limit(&self) -> Option<u32> {
        (self.limit != NONE).then_some(self.limit)
    }

    /// Item `index` of a `foreach` task's list: its templates also see
    /// `item` and `index`.
    pub fn resolve_item(
        &self,
        task: u32,
        attempt: u32,
        index: usize,
        item: &serde_json::Value,
    ) -> Result<Resolved, TemplateError> {
        let context = minijinja::context! {
            item => Value::from(minijinja::value::Serde(item)),
            index => index,
            ..self.context(task, attempt, false)
        };
        self.resolve_in(&Scope::given(self, context), task)
    }

    /// Copy `index` of a `swarm` task: its templates also see `variant`
    /// (its entry of `variants`, or its index among `count` copies).
    pub fn resolve_variant(
        &self,
        task: u32,
        attempt: u32,
        index: usize,
    ) -> Result<Resolved, TemplateError> {
        let variant = self
            .task(task)
            .modifiers()
            .swarm
            .as_ref()
            .and_then(|swarm| swarm.variants.get(index))
            .map_or_else(
                || Value::from(index),
                |variant| Value::from(minijinja::value::Serde(variant)),
            );
        let context = minijinja::context! {
            variant => variant,
            ..self.context(task, attempt, false)
        };
        self.resolve_in(&Scope::given(self, context), task)
    }

    fn resolve_in(&self, scope: &Scope<'_>, task: u32) -> Result<Resolved, TemplateError> {
        let definition = self.task(task);
        let work = match &definition.kind {
            TaskKind::Run(script) => Work::Shell(scope.shell(script.as_str())?),
            TaskKind::Command(argv) => Work::Command(
                argv.iter()
                    .map(|argument| scope.text(argument.as_str(), "command"))
                    .collect::<Result<_, _>>()?,
            ),
            TaskKind::Http(http) => Work::Http(Box::new(scope.http(http)?)),
            TaskKind::Agent(agent) => Work::Agent(Box::new(AgentCall {
                capability: agent.capability.clone(),
                prompt: agent
                    .prompt
                    .as_ref()
                    .map(|prompt| scope.text(prompt.as_str(), "agent.prompt"))
                    .transpose()?,
                input: agent
                    .input
                    .as_ref()
                    .map(|input| scope.json(input, "agent.input"))
                    .transpose()?,
                schema: agent.schema.clone(),
            })),
            TaskKind::Mcp(mcp) => {
                let arguments = match &mcp.arguments {
                    Some(arguments) => match scope.json(arguments, "mcp.arguments")? {
                        serde_json::Value::Object(arguments) => arguments,
                        _ => {
                            return Err(TemplateError {
                                what: "mcp.arguments".to_owned(),
                                detail: "the arguments are not a mapping".to_owned(),
                            });
                        }
                    },
                    None => serde_json::Map::new(),
                };
                Work::Mcp(Box::new(McpCall {
                    server: mcp.server.clone(),
                    tool: mcp.tool.clone(),
                    arguments,
                }))
            }
            TaskKind::Noop => Work::Noop,
            TaskKind::Handler(name) => Work::Handler(name.clone()),
            TaskKind::Approval(approval) => Work::Approval {
                prompt: scope.text(approval.prompt.as_str(), "prompt")?,
                choices: approval.choices.clone(),
            },
            TaskKind::Workflow(child) => {
                let inputs = child
                    .inputs
                    .iter()
                    .map(|(name, value)| {
                        let what = format!("workflow.inputs.{name}");
                        Ok((name.clone(), scope.json(value, &what)?))
                    })
                    .collect::<Result<_, TemplateError>>()?;
                let workflow = match (&child.inline, &child.reference) {
                    (Some(inline), _) => ChildWorkflow::Inline(Arc::new(inline.clone())),
                    (None, Some(reference)) => ChildWorkflow::Reference(reference.clone()),
                    (None, None) => unreachable!("a sub-workflow is parsed with a ref or inline"),
                };
                Work::Workflow(Box::new(ChildRun { workflow, inputs }))
            }
            other => {
                return Err(TemplateError {
                    what: other.name().to_owned(),
                    detail: format!("`{}` tasks cannot run in this engine", other.name()),
                });
            }
        };
        let route = match (&definition.kind, &definition.modifiers().runs_on) {
            (TaskKind::Agent(agent), _) => Some(scope.route(
                &agent.capability,
                &agent.labels,
                agent.fairness_key.as_ref(),
                "agent",
            )?),
            (_, Some(runs_on)) => Some(scope.route(
                &runs_on.capability,
                &runs_on.labels,
                runs_on.fairness_key.as_ref(),
                "runs_on",
            )?),
            _ => None,
        };
        let route = route.map(|mut route| {
            for (name, value) in self.labels.iter() {
                route
                    .labels
                    .entry(name.clone())
                    .or_insert_with(|| value.clone());
            }
            Route {
                priority: definition.priority,
                ..route
            }
        });
        Ok(Resolved {
            route,
            ..scope.finish(definition, work)?
        })
    }

    /// The `compensate` action of `task`, with `output` bound to its output.
    pub fn resolve_compensation(&self, task: u32) -> Result<Resolved, TemplateError> {
        let scope = Scope::new(self, task, self.attempts(task), true);
        let definition = self.task(task);
        let Some(action) = definition.modifiers().compensate.as_deref() else {
            return Err(TemplateError {
                what: "compensate".to_owned(),
                detail: format!("task `{}` has no compensate action", definition.id),
            });
        };
        let work = scope.action(action, "compensate.command")?;
        scope.finish(definition, work)
    }

    /// A hook's action, rendered over `inputs`, `run`, the `event` that
    /// fired it and, for a task's event, `task` (its id and attempt).
    pub fn resolve_hook(
        &self,
        task: Option<u32>,
        action: &Action,
        event: &serde_json::Value,
    ) -> Result<Resolved, TemplateError> {
        let task = task.map(|task| {
            minijinja::context! {
                id => self.task(task).id.as_str(),
                attempt => self.attempts(task),
            }
        });
        let context = minijinja::context! {
            inputs => self.inputs.clone(),
            run => self.run_context.clone(),
            event => Value::from(minijinja::value::Serde(event)),
            task => task.unwrap_or(Value::UNDEFINED),
        };
        let scope = Scope::given(self, context);
        Ok(Resolved {
            env: Vec::new(),
            cwd: None,
            work: scope.action(action, "hook.command")?,
            route: None,
        })
    }
}

//! A task ready to hand to a runner: every template evaluated, nothing left
//! that depends on the run's state.

use std::cell::OnceCell;

use minijinja::Value;

use crate::spec::{Action, HttpRequest, Method, StatusMatch, Task};

use super::state::RunState;
use super::templates::{self, ShellScript, TemplateError};

/// One attempt (or compensation) of a task, resolved.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Resolved {
    /// The task's `env`, rendered.
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    pub work: Work,
}

/// What a runner does.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum Work {
    /// `sh -c script`, with the script's templated values as variables.
    Shell(ShellScript),
    Command(Vec<String>),
    Http(Box<HttpCall>),
    Noop,
    /// An in-process handler, by the name it was registered under.
    Handler(String),
    /// A question for people; the run waits for their decision instead of
    /// running anything.
    Approval {
        prompt: String,
        choices: Vec<String>,
    },
    /// A child run of another workflow.
    Workflow(Box<ChildRun>),
}

/// A sub-workflow task's child run: the workflow and its inputs, rendered
/// over the parent's context.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ChildRun {
    pub workflow: ChildWorkflow,
    pub inputs: serde_json::Map<String, serde_json::Value>,
}

/// Which workflow a child run runs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum ChildWorkflow {
    Inline(std::sync::Arc<crate::spec::Workflow>),
    /// `name@version` (or `name` for the newest), found by the engine.
    Reference(String),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct HttpCall {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: HttpBody,
    /// Accepted statuses; any 2xx when empty.
    pub expect: Vec<StatusMatch>,
}

impl HttpCall {
    pub fn accepts(&self, status: u16) -> bool {
        if self.expect.is_empty() {
            return (200..300).contains(&status);
        }
        self.expect.iter().any(|accepted| match *accepted {
            StatusMatch::Exact(exact) => exact == status,
            StatusMatch::Class(class) => status / 100 == u16::from(class),
        })
    }
}

#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub enum HttpBody {
    Empty,
    Json(serde_json::Value),
    Text(String),
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

    pub(crate) fn finish(&self, task: &Task, work: Work) -> Result<Resolved, TemplateError> {
        Ok(Resolved {
            env: task
                .env
                .iter()
                .map(|(name, value)| Ok((name.clone(), self.text(value.as_str(), "env")?)))
                .collect::<Result<_, TemplateError>>()?,
            cwd: task
                .cwd
                .as_ref()
                .map(|cwd| self.text(cwd.as_str(), "cwd"))
                .transpose()?,
            work,
        })
    }
}

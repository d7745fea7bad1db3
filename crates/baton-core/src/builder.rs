//! Workflows written in Rust: the same model as YAML and JSON, built with
//! a fluent API and checked by the same validator.
//!
//! ```
//! use baton_core::{TaskKind, Workflow};
//!
//! let valid = Workflow::builder("release")
//!     .concurrency(4)
//!     .task("build", TaskKind::run("cargo build --release"))
//!     .task("test", TaskKind::run("cargo test"))
//!     .needs(["build"])
//!     .build()
//!     .expect("a valid workflow");
//! assert_eq!(valid.workflow().tasks.len(), 2);
//! ```

use compact_str::CompactString;

use crate::check::{Valid, check};
use crate::duration::Duration;
use crate::problem::Problem;
use crate::spec::{
    Action, Check, Expression, FailurePolicy, InputSpec, NeedCondition, RetryPolicy, Task,
    TaskKind, Template, Timeout, Workflow,
};

/// Builds a [`Workflow`]; [`WorkflowBuilder::task`] moves on to a task.
#[derive(Clone, Debug)]
pub struct WorkflowBuilder {
    workflow: Workflow,
}

/// Builds one task; `task` starts the next, `build` checks the workflow.
#[derive(Clone, Debug)]
pub struct TaskBuilder {
    workflow: WorkflowBuilder,
    task: Task,
}

impl Workflow {
    pub fn builder(name: impl Into<String>) -> WorkflowBuilder {
        WorkflowBuilder {
            workflow: Workflow::new(name),
        }
    }
}

impl WorkflowBuilder {
    pub fn version(mut self, version: u32) -> Self {
        self.workflow.version = Some(version);
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> Self {
        self.workflow.description = Some(description.into());
        self
    }

    pub fn input(mut self, name: impl Into<String>, spec: InputSpec) -> Self {
        self.workflow.inputs.insert(name.into(), spec);
        self
    }

    pub fn concurrency(mut self, limit: u32) -> Self {
        self.workflow.concurrency = Some(limit);
        self
    }

    pub fn timeout(mut self, limit: Duration) -> Self {
        self.workflow.timeout = Some(limit);
        self
    }

    pub fn on_failure(mut self, policy: FailurePolicy) -> Self {
        self.workflow.on_failure = policy;
        self
    }

    pub fn default_retry(mut self, retry: RetryPolicy) -> Self {
        self.workflow.defaults.retry = Some(retry);
        self
    }

    pub fn default_timeout(mut self, timeout: Timeout) -> Self {
        self.workflow.defaults.timeout = Some(timeout);
        self
    }

    /// Starts a task.
    pub fn task(self, id: impl Into<CompactString>, kind: TaskKind) -> TaskBuilder {
        TaskBuilder {
            workflow: self,
            task: Task::new(id, kind),
        }
    }

    /// Adds a task built elsewhere.
    pub fn with_task(mut self, task: Task) -> Self {
        self.workflow.tasks.push(task);
        self
    }

    /// The workflow as built, unchecked.
    pub fn into_workflow(self) -> Workflow {
        self.workflow
    }

    /// Checks the workflow like any loaded spec.
    pub fn build(self) -> Result<Valid, Vec<Problem>> {
        check(self.workflow)
    }
}

impl TaskBuilder {
    pub fn needs<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<CompactString>,
    {
        self.task.needs.extend(ids.into_iter().map(Into::into));
        self
    }

    /// A need that waits for `condition` rather than success: a cleanup
    /// that runs `Always`, a notice sent `OnFailure`.
    pub fn need_on(mut self, id: impl Into<CompactString>, condition: NeedCondition) -> Self {
        let id = id.into();
        if condition != NeedCondition::OnSuccess {
            self.task
                .modifiers_mut()
                .need_conditions
                .insert(id.clone(), condition);
        }
        self.task.needs.push(id);
        self
    }

    pub fn when(mut self, condition: impl Into<Expression>) -> Self {
        self.task.modifiers_mut().when = Some(condition.into());
        self
    }

    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.task.modifiers_mut().retry = Some(Box::new(retry));
        self
    }

    pub fn timeout(mut self, timeout: Timeout) -> Self {
        self.task.modifiers_mut().timeout = Some(timeout);
        self
    }

    pub fn env(mut self, name: impl Into<String>, value: impl Into<Template>) -> Self {
        self.task
            .modifiers_mut()
            .env
            .insert(name.into(), value.into());
        self
    }

    pub fn cwd(mut self, directory: impl Into<Template>) -> Self {
        self.task.modifiers_mut().cwd = Some(directory.into());
        self
    }

    pub fn priority(mut self, priority: i32) -> Self {
        self.task.priority = priority;
        self
    }

    pub fn estimate(mut self, estimate: Duration) -> Self {
        self.task.modifiers_mut().estimate = Some(estimate);
        self
    }

    pub fn compensate(mut self, action: Action) -> Self {
        self.task.modifiers_mut().compensate = Some(Box::new(action));
        self
    }

    pub fn check(mut self, condition: impl Into<Expression>, message: impl Into<String>) -> Self {
        self.task.modifiers_mut().check.push(Check {
            expr: condition.into(),
            message: Some(message.into()),
        });
        self
    }

    pub fn concurrency_key(mut self, key: impl Into<Template>) -> Self {
        self.task.modifiers_mut().concurrency_key = Some(key.into());
        self
    }

    /// Any other change to the task under construction.
    pub fn configure(mut self, change: impl FnOnce(&mut Task)) -> Self {
        change(&mut self.task);
        self
    }

    /// Finishes this task and starts the next.
    pub fn task(self, id: impl Into<CompactString>, kind: TaskKind) -> TaskBuilder {
        self.done().task(id, kind)
    }

    /// Finishes this task, back to workflow settings.
    pub fn done(mut self) -> WorkflowBuilder {
        self.workflow.workflow.tasks.push(self.task);
        self.workflow
    }

    pub fn build(self) -> Result<Valid, Vec<Problem>> {
        self.done().build()
    }
}

impl TaskKind {
    pub fn run(script: impl Into<Template>) -> TaskKind {
        TaskKind::Run(script.into())
    }

    pub fn command<I, S>(argv: I) -> TaskKind
    where
        I: IntoIterator<Item = S>,
        S: Into<Template>,
    {
        TaskKind::Command(argv.into_iter().map(Into::into).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Backoff, HttpRequest, Method, OnTimeout};
    use crate::{Code, Format, load};

    fn sample() -> Workflow {
        Workflow::builder("release")
            .version(3)
            .input(
                "branch",
                InputSpec {
                    default: Some("main".into()),
                    ..InputSpec::default()
                },
            )
            .concurrency(4)
            .on_failure(FailurePolicy::Compensate)
            .default_retry(RetryPolicy {
                backoff: Backoff::Fibonacci,
                jitter: 0.2,
                ..RetryPolicy::default()
            })
            .task(
                "checkout",
                TaskKind::run("git clone --branch \"$BRANCH\" repo src"),
            )
            .env("BRANCH", "{{ inputs.branch }}")
            .task("build", TaskKind::command(["cargo", "build", "--release"]))
            .needs(["checkout"])
            .timeout(Timeout {
                after: Duration::from_secs(600),
                on_timeout: OnTimeout::Skip,
                grace: Duration::from_secs(5),
            })
            .estimate(Duration::from_secs(120))
            .task(
                "publish",
                TaskKind::Http(Box::new(HttpRequest {
                    method: Method::Post,
                    url: "https://example.invalid/publish".into(),
                    json: Some(serde_json::json!({"sha": "{{ tasks.build.output.sha }}"})),
                    ..HttpRequest::default()
                })),
            )
            .needs(["build"])
            .when("inputs.branch == 'main'")
            .compensate(Action::Run("./unpublish.sh".into()))
            .check("output.status == 200", "publish must answer 200")
            .done()
            .into_workflow()
    }

    #[test]
    fn built_workflows_round_trip_through_yaml_and_json() {
        let workflow = sample();
        let yaml = serde_saphyr::to_string(&workflow).unwrap();
        let json = serde_json::to_string_pretty(&workflow).unwrap();
        for (text, format) in [(yaml.as_str(), Format::Yaml), (json.as_str(), Format::Json)] {
            let loaded = load(text, format);
            assert!(loaded.problems.is_empty(), "{:?}\n{text}", loaded.problems);
            assert_eq!(loaded.workflow.as_ref(), Some(&workflow), "{text}");
        }
    }

    #[test]
    fn built_workflows_are_checked_like_loaded_ones() {
        assert!(
            Workflow::builder("ok")
                .task("a", TaskKind::Noop)
                .build()
                .is_ok()
        );
        let problems = Workflow::builder("bad")
            .task("a", TaskKind::Noop)
            .needs(["b"])
            .task("b", TaskKind::Noop)
            .needs(["a"])
            .build()
            .unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].code, Code::Cycle);
        assert_eq!(problems[0].message, "tasks form a cycle: a -> b -> a");
    }
}

//! Problems found in a workflow: what went wrong, where, and how to fix it.
//!
//! Validation never stops at the first problem; it returns them all, each
//! with a stable [`Code`] that scripts can match on and a [`Path`] into the
//! document. A [`Location`] (line:col) is attached when the workflow came from
//! source text, by [`crate::SourceMap`].

use std::fmt;

use serde::Serialize;

/// A stable identifier for each kind of problem, printed as `kebab-case`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Code {
    /// The text is not valid YAML or JSON.
    Syntax,
    /// A field the spec does not define.
    UnknownField,
    /// A value of the wrong type or shape.
    InvalidValue,
    /// A duration that does not parse (`90s`, `10m`, `1h30m` do).
    InvalidDuration,
    /// A required field is absent.
    MissingField,
    /// Two tasks share one id.
    DuplicateTask,
    /// A task id with characters outside `[A-Za-z0-9_-]`, or empty.
    InvalidTaskId,
    /// A task lists the same need twice.
    DuplicateNeed,
    /// A task needs a task that does not exist.
    MissingDependency,
    /// A task needs itself.
    SelfDependency,
    /// Tasks that need each other in a loop.
    Cycle,
    /// A task without a kind (`run`, `command`, `http`, ...).
    MissingKind,
    /// A task with more than one kind.
    MultipleKinds,
    /// A retry policy whose numbers cannot work.
    InvalidRetry,
    /// A timeout of zero, or one that cannot work.
    InvalidTimeout,
    /// A `{{ ... }}` template that does not parse.
    TemplateSyntax,
    /// A condition or expression that does not parse.
    ExpressionSyntax,
    /// A template names a variable that does not exist in its context.
    UnknownVariable,
    /// A template names a task that does not exist.
    UnknownTask,
    /// A template names a task that is not upstream of the task using it.
    NotAnAncestor,
    /// A template indexes `tasks` or `inputs` with a computed name.
    DynamicReference,
    /// A template names an input the workflow does not declare.
    UndeclaredInput,
    /// A required input was not given for a run.
    MissingInput,
    /// An input value does not match its declared type.
    InvalidInput,
    /// An approval whose choices or default do not fit together.
    InvalidApproval,
    /// A `schedule:` whose cron or time zone cannot be read, or whose inputs
    /// do not fit the workflow's.
    InvalidSchedule,
    /// Any other setting that cannot work (zero concurrency, a `with` without `uses`, ...).
    InvalidSetting,
    /// A kind or modifier this engine cannot run (yet), or a handler no one registered.
    NotRunnable,
    /// A `workflow: name@version` (or `uses:`) that names nothing that can be
    /// found, or a chain of them that never ends.
    UnknownWorkflow,
}

impl Code {
    /// The code as printed, e.g. `missing-dependency`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Syntax => "syntax",
            Code::UnknownField => "unknown-field",
            Code::InvalidValue => "invalid-value",
            Code::InvalidDuration => "invalid-duration",
            Code::MissingField => "missing-field",
            Code::DuplicateTask => "duplicate-task",
            Code::InvalidTaskId => "invalid-task-id",
            Code::DuplicateNeed => "duplicate-need",
            Code::MissingDependency => "missing-dependency",
            Code::SelfDependency => "self-dependency",
            Code::Cycle => "cycle",
            Code::MissingKind => "missing-kind",
            Code::MultipleKinds => "multiple-kinds",
            Code::InvalidRetry => "invalid-retry",
            Code::InvalidTimeout => "invalid-timeout",
            Code::TemplateSyntax => "template-syntax",
            Code::ExpressionSyntax => "expression-syntax",
            Code::UnknownVariable => "unknown-variable",
            Code::UnknownTask => "unknown-task",
            Code::NotAnAncestor => "not-an-ancestor",
            Code::DynamicReference => "dynamic-reference",
            Code::UndeclaredInput => "undeclared-input",
            Code::MissingInput => "missing-input",
            Code::InvalidInput => "invalid-input",
            Code::InvalidApproval => "invalid-approval",
            Code::InvalidSchedule => "invalid-schedule",
            Code::InvalidSetting => "invalid-setting",
            Code::NotRunnable => "not-runnable",
            Code::UnknownWorkflow => "unknown-workflow",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One step into a document: a mapping key or a sequence index.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Segment {
    Key(String),
    Index(usize),
}

/// Where in the document a problem sits, e.g. `tasks.build.needs[1]`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path(Vec<Segment>);

impl Path {
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// The path of a task's entry: `tasks.ID`.
    pub fn task(id: &str) -> Path {
        Path::root().key("tasks").key(id)
    }

    pub fn key(mut self, key: impl Into<String>) -> Path {
        self.0.push(Segment::Key(key.into()));
        self
    }

    pub fn index(mut self, index: usize) -> Path {
        self.0.push(Segment::Index(index));
        self
    }

    /// Appends every segment of `other`.
    pub fn join(mut self, other: &Path) -> Path {
        self.0.extend(other.0.iter().cloned());
        self
    }

    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path without its last segment; the root is its own parent.
    pub fn parent(&self) -> Path {
        let mut segments = self.0.clone();
        segments.pop();
        Path(segments)
    }

    pub(crate) fn push(&mut self, segment: Segment) {
        self.0.push(segment);
    }

    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (position, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Key(key) if position == 0 => f.write_str(key)?,
                Segment::Key(key) => write!(f, ".{key}")?,
                Segment::Index(index) => write!(f, "[{index}]")?,
            }
        }
        Ok(())
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A place in source text. Lines and columns count from 1, columns in
/// characters; `offset` and `length` are in bytes, for underlining.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Location {
    pub line: usize,
    pub column: usize,
    pub offset: usize,
    pub length: usize,
}

/// Whether a problem points at a mapping key or at the value under it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Key,
    Value,
}

/// One thing wrong with a workflow.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Problem {
    pub code: Code,
    pub message: String,
    /// The task the problem belongs to, when it belongs to one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    pub path: Path,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// A suggestion, such as "did you mean `needs`?".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    #[serde(skip)]
    pub target: Target,
    /// A task name the problem says does not exist: a "did you mean" among
    /// the task ids is added once all problems are found.
    #[serde(skip)]
    pub(crate) unknown_task: Option<String>,
}

impl Problem {
    pub fn new(code: Code, path: Path, message: impl Into<String>) -> Problem {
        let task = match path.segments() {
            [Segment::Key(tasks), Segment::Key(id), ..] if tasks == "tasks" => Some(id.clone()),
            _ => None,
        };
        Problem {
            code,
            message: message.into(),
            task,
            path,
            location: None,
            help: None,
            target: Target::Value,
            unknown_task: None,
        }
    }

    /// Marks the problem as naming a task that does not exist.
    pub(crate) fn naming_unknown_task(mut self, name: &str) -> Problem {
        self.unknown_task = Some(name.to_owned());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Problem {
        self.help = Some(help.into());
        self
    }

    /// Points the problem at the key of its path rather than the value.
    pub fn at_key(mut self) -> Problem {
        self.target = Target::Key;
        self
    }

    pub fn at(mut self, location: Location) -> Problem {
        self.location = Some(location);
        self
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = self.location {
            write!(f, "{}:{}: ", location.line, location.column)?;
        }
        write!(f, "{}: {}", self.code, self.message)?;
        if !self.path.is_root() {
            write!(f, " (at {})", self.path)?;
        }
        if let Some(help) = &self.help {
            write!(f, "; {help}")?;
        }
        Ok(())
    }
}

/// The closest of `candidates` to `word`, if any is close enough to be a
/// plausible typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|candidate| (strsim::jaro_winkler(word, candidate), candidate))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prints_keys_with_dots_and_indices_in_brackets() {
        let path = Path::task("build").key("needs").index(1);
        assert_eq!(path.to_string(), "tasks.build.needs[1]");
    }

    #[test]
    fn problem_under_a_task_knows_its_task() {
        let problem = Problem::new(Code::Cycle, Path::task("a").key("needs"), "x");
        assert_eq!(problem.task.as_deref(), Some("a"));
        let top = Problem::new(Code::Syntax, Path::root().key("name"), "x");
        assert_eq!(top.task, None);
    }

    #[test]
    fn did_you_mean_finds_close_words_only() {
        let fields = ["needs", "when", "retry"];
        assert_eq!(did_you_mean("nedes", fields), Some("needs"));
        assert_eq!(did_you_mean("zzzzz", fields), None);
    }
}

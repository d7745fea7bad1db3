//! The checks themselves: a workflow's problems, all at once, and the
//! [`Valid`] workflow (with its DAG and plan) when it has none.

use compact_str::CompactString;
use std::sync::{Arc, OnceLock};

use minijinja::Environment;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use super::dag::Dag;
use super::{dag, fields, refs};
use crate::load::{Format, load};
use crate::plan::Plan;
use crate::problem::{Code, Path, Problem, Segment, did_you_mean};
use crate::source_map::SourceMap;
use crate::spec::{TaskKind, Workflow};

/// A workflow that passed every check, with its DAG.
#[derive(Clone, Debug)]
pub struct Valid {
    /// Shared, so a run's record can hold it without copying every task.
    workflow: Arc<Workflow>,
    dag: Dag,
    /// Tasks by (priority desc, id asc), computed on first use and shared by
    /// every run of this workflow.
    ready_order: OnceLock<Arc<ReadyOrder>>,
    /// Task indices by id, made on first use and shared by every run.
    names: OnceLock<FxHashMap<CompactString, u32>>,
}

/// The order ready tasks start in, as a rank per task and the tasks by rank.
#[derive(Debug)]
pub(crate) struct ReadyOrder {
    pub(crate) rank: Vec<u32>,
    pub(crate) by_rank: Vec<u32>,
}

impl Valid {
    fn new(workflow: Workflow, dag: Dag) -> Valid {
        Valid {
            workflow: Arc::new(workflow),
            dag,
            ready_order: OnceLock::new(),
            names: OnceLock::new(),
        }
    }

    pub fn workflow(&self) -> &Workflow {
        &self.workflow
    }

    pub fn dag(&self) -> &Dag {
        &self.dag
    }

    pub fn into_workflow(self) -> Workflow {
        Arc::unwrap_or_clone(self.workflow)
    }

    /// The workflow, shared.
    pub fn shared_workflow(&self) -> Arc<Workflow> {
        Arc::clone(&self.workflow)
    }

    pub fn plan(&self) -> Plan {
        Plan::new(&self.workflow, &self.dag)
    }

    /// The index of the task named `id`.
    pub fn task_index(&self, id: &str) -> Option<u32> {
        self.names().get(id).copied()
    }

    /// Task indices by id.
    pub(crate) fn names(&self) -> &FxHashMap<CompactString, u32> {
        self.names.get_or_init(|| {
            self.workflow
                .tasks
                .iter()
                .enumerate()
                .map(|(index, task)| (task.id.clone(), index as u32))
                .collect()
        })
    }

    pub(crate) fn ready_order(&self) -> Arc<ReadyOrder> {
        let order = self.ready_order.get_or_init(|| {
            let tasks = &self.workflow.tasks;
            // Sorting compact keys, not indices into the tasks, keeps the
            // comparisons in cache.
            let mut keys: Vec<(std::cmp::Reverse<i32>, &str, u32)> = tasks
                .iter()
                .enumerate()
                .map(|(index, task)| {
                    (
                        std::cmp::Reverse(task.priority),
                        task.id.as_str(),
                        index as u32,
                    )
                })
                .collect();
            keys.par_sort_unstable();
            let by_rank: Vec<u32> = keys.into_iter().map(|(_, _, index)| index).collect();
            let mut rank = vec![0u32; tasks.len()];
            for (position, &task) in by_rank.iter().enumerate() {
                rank[task as usize] = position as u32;
            }
            Arc::new(ReadyOrder { rank, by_rank })
        });
        Arc::clone(order)
    }
}

/// Checks a workflow: structure, graph, templates and references.
pub fn check(workflow: Workflow) -> Result<Valid, Vec<Problem>> {
    validate(&workflow).map(|dag| Valid::new(workflow, dag))
}

/// [`check`] without taking the workflow: its DAG, or every problem.
pub fn validate(workflow: &Workflow) -> Result<Dag, Vec<Problem>> {
    match problems(workflow, &[]) {
        (Some(dag), problems) if problems.is_empty() => Ok(dag),
        (_, problems) => Err(problems),
    }
}

/// Loads and checks source text; problems come with line:col.
pub fn check_source(text: &str, format: Format) -> Result<Valid, Vec<Problem>> {
    let loaded = load(text, format);
    let mut all = loaded.problems;
    let mut valid = None;
    if let Some(workflow) = loaded.workflow {
        let (dag, problems) = problems(&workflow, &loaded.unloaded);
        all.extend(problems);
        if all.is_empty() {
            valid = dag.map(|dag| Valid::new(workflow, dag));
        }
    }
    match valid {
        Some(valid) => Ok(valid),
        None => {
            SourceMap::locate_all(text, &mut all);
            sort(&mut all);
            Err(all)
        }
    }
}

/// Problems in source order when located, path order otherwise.
fn sort(problems: &mut [Problem]) {
    problems.sort_by(|a, b| {
        let position = |problem: &Problem| problem.location.map(|location| location.offset);
        position(a)
            .cmp(&position(b))
            .then_with(|| a.path.cmp(&b.path))
    });
}

/// Every problem of `workflow`, and its DAG when the graph has no cycle.
/// `unloaded` names tasks of the source that did not load: references to
/// them are not reported as missing.
pub(crate) fn problems(workflow: &Workflow, unloaded: &[String]) -> (Option<Dag>, Vec<Problem>) {
    let unloaded: FxHashSet<&str> = unloaded.iter().map(String::as_str).collect();
    let unloaded = &unloaded;
    let mut problems = Vec::new();
    fields::workflow_problems(workflow, unloaded.is_empty(), &mut problems);
    let index = dag::index(&workflow.tasks, &mut problems);
    let (dag, graph_problems) = dag::build(&workflow.tasks, &index, unloaded);
    problems.extend(graph_problems);
    dag::verdict_problems(&workflow.tasks, dag.as_ref(), &mut problems);

    let env = Environment::new();
    let context = Context {
        workflow,
        dag: dag.as_ref(),
        index: &index,
        unloaded,
        env: &env,
    };
    let task_problems: Vec<Problem> = workflow
        .tasks
        .par_iter()
        .enumerate()
        .flat_map_iter(|(position, task)| context.task_problems(position as u32, task))
        .collect();
    problems.extend(task_problems);
    let workflow_sites = refs::workflow_sites(workflow);
    let references = refs::scan(&env, &workflow_sites, &mut problems);
    for reference in references {
        match reference {
            refs::Reference::Input { name, path } => {
                context.input_reference(&name, path, &mut problems);
            }
            refs::Reference::Param { name, path } => {
                problems.push(unknown_param(&name, path, &[]));
            }
            refs::Reference::Task { .. } => {}
        }
    }
    dag::suggest_tasks(&index, &mut problems);
    (dag, problems)
}

/// `params.NAME` where no parameter has that name.
fn unknown_param(name: &str, path: Path, known: &[&str]) -> Problem {
    let problem = Problem::new(
        Code::UnknownVariable,
        path,
        format!("unknown parameter `{name}`"),
    );
    match crate::problem::did_you_mean(name, known.iter().copied()) {
        Some(suggestion) => problem.with_help(format!("did you mean `params.{suggestion}`?")),
        None if known.is_empty() => problem.with_help(
            "`params` are given by a `uses` template's `with` (or a task's own `params`)",
        ),
        None => problem.with_help(format!("this task's parameters: {}", known.join(", "))),
    }
}

struct Context<'a> {
    workflow: &'a Workflow,
    dag: Option<&'a Dag>,
    index: &'a FxHashMap<&'a str, u32>,
    unloaded: &'a FxHashSet<&'a str>,
    env: &'a Environment<'a>,
}

impl Context<'_> {
    fn task_problems(&self, position: u32, task: &crate::spec::Task) -> Vec<Problem> {
        let mut problems = Vec::new();
        fields::task_problems(task, &mut problems);
        if let Some(target) = &task.modifiers().escalate
            && !self.index.contains_key(target.as_str())
        {
            problems.push(self.unknown_task(target, Path::task(&task.id).key("escalate")));
        }
        if let TaskKind::Workflow(child) = &task.kind
            && let Some(inline) = &child.inline
        {
            let prefix = Path::task(&task.id).key("workflow").key("inline");
            let (_, child_problems) = self::problems(inline, &[]);
            problems.extend(child_problems.into_iter().map(|mut problem| {
                problem.path = prefix.clone().join(&problem.path);
                problem.task = Some(task.id.to_string());
                problem
            }));
        }
        let sites = refs::task_sites(task);
        if sites.is_empty() {
            return problems;
        }
        let mut seen = Vec::new();
        for reference in refs::scan(self.env, &sites, &mut problems) {
            match reference {
                refs::Reference::Input { name, path } => {
                    self.input_reference(&name, path, &mut problems)
                }
                refs::Reference::Param { name, path } => {
                    if !task.modifiers().params.contains_key(&name) {
                        let known: Vec<&str> =
                            task.modifiers().params.keys().map(String::as_str).collect();
                        problems.push(unknown_param(&name, path, &known));
                    }
                }
                refs::Reference::Task { name, path } => {
                    let Some(&target) = self.index.get(name.as_str()) else {
                        if !self.unloaded.contains(name.as_str()) {
                            problems.push(self.unknown_task(&name, path));
                        }
                        continue;
                    };
                    let upstream = match self.dag {
                        Some(dag) => {
                            target != position && dag.is_ancestor(target, position, &mut seen)
                        }
                        None => true,
                    };
                    if !upstream {
                        problems.push(not_an_ancestor(&task.id, &name, path));
                    }
                }
            }
        }
        problems
    }

    fn unknown_task(&self, name: &str, path: Path) -> Problem {
        Problem::new(
            Code::UnknownTask,
            path,
            format!("there is no task `{name}`"),
        )
        .naming_unknown_task(name)
    }

    fn input_reference(&self, name: &str, path: Path, problems: &mut Vec<Problem>) {
        if self.workflow.inputs.contains_key(name) {
            return;
        }
        let problem = Problem::new(
            Code::UndeclaredInput,
            path,
            format!("input `{name}` is used but not declared"),
        );
        problems.push(
            match did_you_mean(name, self.workflow.inputs.keys().map(String::as_str)) {
                Some(suggestion) => problem.with_help(format!("did you mean `{suggestion}`?")),
                None => problem.with_help(format!(
                    "declare it under `inputs: {{{name}: {{type: string}}}}`"
                )),
            },
        );
    }
}

fn not_an_ancestor(id: &str, name: &str, path: Path) -> Problem {
    let own = name == id;
    let is_own_output_place = path
        .segments()
        .get(2)
        .is_some_and(|segment| matches!(segment, Segment::Key(key) if key == "check" || key == "repeat" || key == "compensate"));
    let problem = Problem::new(
        Code::NotAnAncestor,
        path,
        if own {
            format!("task `{id}` reads its own output through `tasks.{name}`")
        } else {
            format!("task `{id}` reads `tasks.{name}`, which is not upstream of it")
        },
    );
    match (own, is_own_output_place) {
        (true, true) => problem.with_help("use `output` here"),
        (true, false) => problem.with_help("a task's own output exists only after it runs"),
        _ => problem.with_help(format!(
            "add `{name}` to needs (directly or through a task that needs it)"
        )),
    }
}

//! The task graph in compact form: tasks are `u32` indices into
//! `Workflow::tasks`, edges live in two CSR arrays (needs and dependants).
//!
//! Hand-written rather than petgraph because the planner's budget is a
//! million tasks in well under a second: interning names once, then working
//! on flat integer arrays, keeps every pass O(V+E) and cache-friendly.

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::problem::{Code, Path, Problem, did_you_mean};
use crate::spec::Task;

const MISSING: u32 = u32::MAX;
/// Tasks resolved per parallel work unit; large enough to amortise rayon's
/// scheduling, small enough to balance two cores.
const CHUNK: usize = 16 * 1024;
/// Enough cycles to show the shape of the mistake without flooding.
const CYCLE_REPORT_LIMIT: usize = 20;

/// A checked, acyclic task graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dag {
    needs: Csr,
    dependants: Csr,
    /// Longest distance from a root: roots are level 0.
    levels: Vec<u32>,
    level_count: u32,
}

/// Compressed sparse rows: the neighbours of node `i` are
/// `targets[offsets[i]..offsets[i + 1]]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Csr {
    offsets: Vec<u32>,
    targets: Vec<u32>,
}

impl Csr {
    fn row(&self, node: u32) -> &[u32] {
        let node = node as usize;
        &self.targets[self.offsets[node] as usize..self.offsets[node + 1] as usize]
    }

    /// The same edges pointing the other way.
    fn reversed(&self, nodes: usize) -> Csr {
        let mut counts = vec![0u32; nodes + 1];
        for &target in &self.targets {
            counts[target as usize + 1] += 1;
        }
        for index in 1..counts.len() {
            counts[index] += counts[index - 1];
        }
        let mut cursor = counts.clone();
        let mut targets = vec![0u32; self.targets.len()];
        for source in 0..nodes as u32 {
            for &target in self.row(source) {
                let slot = &mut cursor[target as usize];
                targets[*slot as usize] = source;
                *slot += 1;
            }
        }
        Csr {
            offsets: counts,
            targets,
        }
    }
}

impl Dag {
    pub fn len(&self) -> usize {
        self.levels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    /// Indices of the tasks `task` needs, in the order written.
    pub fn needs(&self, task: u32) -> &[u32] {
        self.needs.row(task)
    }

    /// Indices of the tasks that need `task`.
    pub fn dependants(&self, task: u32) -> &[u32] {
        self.dependants.row(task)
    }

    pub fn level(&self, task: u32) -> u32 {
        self.levels[task as usize]
    }

    pub fn level_count(&self) -> u32 {
        self.level_count
    }

    pub fn edge_count(&self) -> usize {
        self.needs.targets.len()
    }

    /// `task` and every task downstream of it, marked by index: what must
    /// run again when `task`'s result is no longer trusted.
    pub fn downstream(&self, task: u32) -> Vec<bool> {
        let mut marked = vec![false; self.len()];
        marked[task as usize] = true;
        let mut stack = vec![task];
        while let Some(node) = stack.pop() {
            for &dependant in self.dependants(node) {
                if !marked[dependant as usize] {
                    marked[dependant as usize] = true;
                    stack.push(dependant);
                }
            }
        }
        marked
    }

    /// Whether `ancestor` is upstream of `task` (reachable through needs).
    /// Levels prune the search: an ancestor always sits on a lower level.
    pub fn is_ancestor(&self, ancestor: u32, task: u32, seen: &mut Vec<bool>) -> bool {
        let floor = self.level(ancestor);
        if floor >= self.level(task) {
            return false;
        }
        seen.clear();
        seen.resize(self.len(), false);
        let mut stack = vec![task];
        while let Some(node) = stack.pop() {
            for &need in self.needs(node) {
                if need == ancestor {
                    return true;
                }
                if !seen[need as usize] && self.level(need) > floor {
                    seen[need as usize] = true;
                    stack.push(need);
                }
            }
        }
        false
    }
}

/// Interns task ids: each id to its index in `tasks`. A repeated id is a
/// problem; the later task wins the name.
pub(crate) fn index<'a>(tasks: &'a [Task], problems: &mut Vec<Problem>) -> FxHashMap<&'a str, u32> {
    let mut index: FxHashMap<&str, u32> = FxHashMap::default();
    index.reserve(tasks.len());
    for (position, task) in tasks.iter().enumerate() {
        if index.insert(task.id.as_str(), position as u32).is_some() {
            problems.push(
                Problem::new(
                    Code::DuplicateTask,
                    Path::task(&task.id),
                    format!("task id `{}` is used more than once", task.id),
                )
                .at_key(),
            );
        }
    }
    index
}

/// A `verdict` task decides the run, so there is at most one and it comes
/// after every other task: a task still to run after the verdict could
/// fail a run already judged.
pub(crate) fn verdict_problems(tasks: &[Task], dag: Option<&Dag>, problems: &mut Vec<Problem>) {
    let mut verdicts = tasks
        .iter()
        .enumerate()
        .filter(|(_, task)| task.modifiers().verdict);
    let Some((position, first)) = verdicts.next() else {
        return;
    };
    for (_, other) in verdicts {
        problems.push(
            Problem::new(
                Code::InvalidSetting,
                Path::task(&other.id).key("verdict"),
                format!(
                    "`{}` gives the run's verdict, and `{}` already does",
                    other.id, first.id
                ),
            )
            .with_help("a run has one verdict: keep `verdict: true` on one task"),
        );
    }
    let Some(dag) = dag else {
        return;
    };
    let mut upstream = vec![false; dag.len()];
    let mut stack = vec![position as u32];
    while let Some(node) = stack.pop() {
        for &need in dag.needs(node) {
            if !std::mem::replace(&mut upstream[need as usize], true) {
                stack.push(need);
            }
        }
    }
    upstream[position] = true;
    let after: Vec<&str> = tasks
        .iter()
        .zip(&upstream)
        .filter(|(_, upstream)| !**upstream)
        .map(|(task, _)| task.id.as_str())
        .collect();
    if after.is_empty() {
        return;
    }
    let shown = after.len().min(5);
    let more = match after.len() - shown {
        0 => String::new(),
        more => format!(" and {more} more"),
    };
    problems.push(
        Problem::new(
            Code::InvalidSetting,
            Path::task(&first.id).key("verdict"),
            format!(
                "the verdict task `{}` must come after every other task, and {}{more} {} not upstream of it",
                first.id,
                after[..shown].iter().map(|id| format!("`{id}`")).collect::<Vec<_>>().join(", "),
                if after.len() == 1 { "is" } else { "are" },
            ),
        )
        .with_help("add them to its needs, with `condition: always` to judge their failures too"),
    );
}

/// The graph of `tasks`, or the problems that keep it from being a DAG.
/// Edge problems (missing, self or repeated needs) do not stop the build;
/// the graph is built without those edges so cycles are still found.
/// `unloaded` names tasks that exist in the source but did not load.
pub(crate) fn build(
    tasks: &[Task],
    index: &FxHashMap<&str, u32>,
    unloaded: &FxHashSet<&str>,
) -> (Option<Dag>, Vec<Problem>) {
    let mut problems = Vec::new();
    let resolved: Vec<Vec<u32>> = tasks
        .par_chunks(CHUNK)
        .map(|chunk| {
            let mut out = Vec::with_capacity(chunk.iter().map(|task| task.needs.len()).sum());
            for task in chunk {
                out.extend(
                    task.needs
                        .iter()
                        .map(|need| index.get(need.as_str()).copied().unwrap_or(MISSING)),
                );
            }
            out
        })
        .collect();

    // `escalate: E` on T is an edge T -> E: E runs after T, and only if T
    // failed (see `RunState`).
    let mut escalations: FxHashMap<u32, Vec<u32>> = FxHashMap::default();
    for (position, task) in tasks.iter().enumerate() {
        if let Some(&target) = task
            .modifiers()
            .escalate
            .as_deref()
            .and_then(|target| index.get(target))
            && target != position as u32
        {
            escalations.entry(target).or_default().push(position as u32);
        }
    }
    let mut needs = Csr {
        offsets: Vec::with_capacity(tasks.len() + 1),
        targets: Vec::with_capacity(resolved.iter().map(Vec::len).sum()),
    };
    needs.offsets.push(0);
    let mut resolved_needs = resolved.iter().flatten().copied();
    for (position, task) in tasks.iter().enumerate() {
        let row_start = needs.targets.len();
        for (need_index, need) in task.needs.iter().enumerate() {
            let target = resolved_needs.next().expect("one resolution per need");
            let path = || Path::task(&task.id).key("needs").index(need_index);
            if target == MISSING {
                if !unloaded.contains(need.as_str()) {
                    problems.push(missing_dependency(&task.id, need, path()));
                }
            } else if target == position as u32 {
                problems.push(Problem::new(
                    Code::SelfDependency,
                    path(),
                    format!("task `{}` needs itself", task.id),
                ));
            } else if needs.targets[row_start..].contains(&target) {
                problems.push(Problem::new(
                    Code::DuplicateNeed,
                    path(),
                    format!("task `{}` lists `{need}` in needs twice", task.id),
                ));
            } else {
                needs.targets.push(target);
            }
        }
        for &source in escalations.get(&(position as u32)).into_iter().flatten() {
            if needs.targets[row_start..].contains(&source) {
                problems.push(Problem::new(
                    Code::InvalidSetting,
                    Path::task(&tasks[source as usize].id).key("escalate"),
                    format!(
                        "`{}` escalates to `{}`, which also needs it: an escalation target runs only when the task fails",
                        tasks[source as usize].id, task.id
                    ),
                ));
            } else {
                needs.targets.push(source);
            }
        }
        needs.offsets.push(needs.targets.len() as u32);
    }

    let dependants = needs.reversed(tasks.len());
    match levels(&needs, &dependants) {
        Ok((levels, level_count)) => {
            let dag = Dag {
                needs,
                dependants,
                levels,
                level_count,
            };
            (Some(dag), problems)
        }
        Err(remaining) => {
            problems.extend(cycles(tasks, &dependants, &remaining));
            (None, problems)
        }
    }
}

fn missing_dependency(id: &str, need: &str, path: Path) -> Problem {
    Problem::new(
        Code::MissingDependency,
        path,
        format!("task `{id}` needs `{need}`, which does not exist"),
    )
    .naming_unknown_task(need)
}

/// Kahn's algorithm: each task's level, or the tasks left over when a cycle
/// stops it (a `true` marks a task that never became ready).
fn levels(needs: &Csr, dependants: &Csr) -> Result<(Vec<u32>, u32), Vec<bool>> {
    let nodes = needs.offsets.len() - 1;
    let mut waiting: Vec<u32> = (0..nodes as u32)
        .map(|node| needs.row(node).len() as u32)
        .collect();
    let mut levels = vec![0u32; nodes];
    let mut frontier: Vec<u32> = (0..nodes as u32)
        .filter(|&node| waiting[node as usize] == 0)
        .collect();
    let mut next = Vec::new();
    let mut done = 0usize;
    let mut level = 0u32;
    while !frontier.is_empty() {
        done += frontier.len();
        for &node in &frontier {
            levels[node as usize] = level;
            for &dependant in dependants.row(node) {
                let count = &mut waiting[dependant as usize];
                *count -= 1;
                if *count == 0 {
                    next.push(dependant);
                }
            }
        }
        std::mem::swap(&mut frontier, &mut next);
        next.clear();
        level += 1;
    }
    if done == nodes {
        Ok((levels, level))
    } else {
        Err(waiting.iter().map(|&count| count > 0).collect())
    }
}

/// The cycles among `remaining` tasks, each as the path `a -> b -> a` in run
/// order (every task needs the one before it), starting from its smallest id.
fn cycles(tasks: &[Task], dependants: &Csr, remaining: &[bool]) -> Vec<Problem> {
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        White,
        Grey,
        Black,
    }
    let mut colour = vec![Colour::White; remaining.len()];
    let mut reported: Vec<Vec<u32>> = Vec::new();
    let mut problems = Vec::new();
    for start in (0..remaining.len() as u32).filter(|&node| remaining[node as usize]) {
        if colour[start as usize] != Colour::White {
            continue;
        }
        let mut stack: Vec<(u32, usize)> = vec![(start, 0)];
        colour[start as usize] = Colour::Grey;
        while let Some((node, next_edge)) = stack.last_mut() {
            let Some(&next) = dependants.row(*node).get(*next_edge) else {
                colour[*node as usize] = Colour::Black;
                stack.pop();
                continue;
            };
            *next_edge += 1;
            if !remaining[next as usize] {
                continue;
            }
            match colour[next as usize] {
                Colour::White => {
                    colour[next as usize] = Colour::Grey;
                    stack.push((next, 0));
                }
                Colour::Grey if reported.len() < CYCLE_REPORT_LIMIT => {
                    let from = stack
                        .iter()
                        .position(|(node, _)| *node == next)
                        .expect("grey nodes are on the stack");
                    let mut cycle: Vec<u32> = stack[from..].iter().map(|(node, _)| *node).collect();
                    let mut members = cycle.clone();
                    members.sort_unstable();
                    if !reported.contains(&members) {
                        reported.push(members);
                        let smallest = (0..cycle.len())
                            .min_by_key(|&at| &tasks[cycle[at] as usize].id)
                            .expect("a cycle has tasks");
                        cycle.rotate_left(smallest);
                        problems.push(cycle_problem(tasks, &cycle));
                    }
                }
                Colour::Grey | Colour::Black => {}
            }
        }
    }
    problems
}

/// `cycle` in run order: each task needs the one before it, and the first
/// needs the last. The problem points at that last need of the first task.
fn cycle_problem(tasks: &[Task], cycle: &[u32]) -> Problem {
    let names: Vec<&str> = cycle
        .iter()
        .map(|&node| tasks[node as usize].id.as_str())
        .collect();
    let first = &tasks[cycle[0] as usize];
    let closing = names[names.len() - 1];
    let need_index = first
        .needs
        .iter()
        .position(|need| need == closing)
        .unwrap_or(0);
    Problem::new(
        Code::Cycle,
        Path::task(&first.id).key("needs").index(need_index),
        format!("tasks form a cycle: {} -> {}", names.join(" -> "), names[0]),
    )
    .with_help("each task in the cycle needs the one before it; remove one of these needs")
}

/// Comparisons "did you mean" may spend on one check, over all its
/// problems: a spec naming a great many unknown tasks is still checked in
/// time linear in its size.
const SUGGESTION_BUDGET: usize = 4_000_000;

/// Problems that get a "did you mean" at most.
const SUGGESTED: usize = 100;

/// Adds "did you mean" among the task ids to problems that name an unknown
/// task, in order, as far as [`SUGGESTION_BUDGET`] goes (each costs one
/// comparison per task), so which ones get one does not depend on timing.
pub(super) fn suggest_tasks(index: &FxHashMap<&str, u32>, problems: &mut [Problem]) {
    let naming: Vec<&mut Problem> = problems
        .iter_mut()
        .filter(|problem| problem.unknown_task.is_some())
        .collect();
    if naming.is_empty() {
        return;
    }
    let mut ids: Vec<&str> = index.keys().copied().collect();
    ids.sort_unstable();
    let affordable = (SUGGESTION_BUDGET / ids.len().max(1)).min(SUGGESTED);
    for problem in naming.into_iter().take(affordable) {
        let name = problem.unknown_task.take().unwrap_or_default();
        if let Some(suggestion) = did_you_mean(&name, ids.iter().copied()) {
            problem.help = Some(format!("did you mean `{suggestion}`?"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskKind;

    fn graph(edges: &[(&str, &[&str])]) -> (Option<Dag>, Vec<String>) {
        let tasks: Vec<Task> = edges
            .iter()
            .map(|(id, needs)| {
                let mut task = Task::new(*id, TaskKind::Noop);
                task.needs = needs.iter().map(|need| (*need).into()).collect();
                task
            })
            .collect();
        let mut problems = Vec::new();
        let index = index(&tasks, &mut problems);
        let (dag, edge_problems) = build(&tasks, &index, &FxHashSet::default());
        problems.extend(edge_problems);
        (
            dag,
            problems
                .iter()
                .map(|problem| problem.message.clone())
                .collect(),
        )
    }

    fn problems_of(spec: &str) -> Vec<String> {
        match crate::check_source(spec, crate::Format::Yaml) {
            Ok(_) => Vec::new(),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn a_verdict_task_comes_after_every_other_task_and_only_one_gives_it() {
        assert_eq!(
            problems_of(
                "name: v\ntasks:\n  a: {run: x}\n  b: {run: x}\n  audit: {run: x, verdict: true, needs: [a]}\n"
            ),
            [
                "5:28: invalid-setting: the verdict task `audit` must come after every other task, and `b` is not upstream of it (at tasks.audit.verdict); add them to its needs, with `condition: always` to judge their failures too"
            ]
        );
        let two = problems_of(
            "name: v\ntasks:\n  a: {run: x, verdict: true}\n  b: {run: x, verdict: true, needs: [a]}\n",
        );
        assert!(
            two.iter().any(
                |problem| problem.contains("`b` gives the run's verdict, and `a` already does")
            ),
            "{two:?}"
        );
        assert!(
            problems_of(
                "name: v\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [a]}\n  audit: {run: x, verdict: true, needs: [{task: b, condition: always}]}\n"
            )
            .is_empty(),
            "upstream through b counts"
        );
    }

    #[test]
    fn a_bad_need_item_is_reported_where_it_is_written() {
        let problems = problems_of(
            "name: v\ntasks:\n  a: {run: x}\n  b: {run: x, needs: [{task: a, condition: later}]}\n",
        );
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("4:"), "{problems:?}");
        assert!(problems[0].contains("tasks.b.needs[0]"), "{problems:?}");
        assert!(problems[0].contains("on_failure"), "{problems:?}");
    }

    #[test]
    fn an_escalation_is_an_edge_that_may_close_a_cycle_and_must_not_double_a_need() {
        let check = |spec: &str| match crate::check_source(spec, crate::Format::Yaml) {
            Ok(valid) => Ok(valid.dag().needs(1).to_vec()),
            Err(problems) => Err(problems
                .iter()
                .map(|problem| (problem.code, problem.path.to_string()))
                .collect::<Vec<_>>()),
        };
        assert_eq!(
            check("name: s\ntasks:\n  w: {noop: true, escalate: boss}\n  boss: {noop: true}\n"),
            Ok(vec![0]),
            "boss waits for w"
        );
        assert!(matches!(
            check("name: s\ntasks:\n  w: {noop: true, needs: [boss], escalate: boss}\n  boss: {noop: true}\n"),
            Err(problems) if problems[0].0 == Code::Cycle
        ));
        assert_eq!(
            check(
                "name: s\ntasks:\n  w: {noop: true, escalate: boss}\n  boss: {noop: true, needs: [w]}\n"
            ),
            Err(vec![(Code::InvalidSetting, "tasks.w.escalate".to_owned())])
        );
    }

    #[test]
    fn downstream_marks_the_task_and_everything_that_needs_it_transitively() {
        let (dag, _) = graph(&[
            ("a", &[]),
            ("b", &["a"]),
            ("c", &["b"]),
            ("d", &["a"]),
            ("e", &[]),
        ]);
        let dag = dag.unwrap();
        assert_eq!(dag.downstream(1), [false, true, true, false, false]);
        assert_eq!(dag.downstream(0), [true, true, true, true, false]);
        assert_eq!(dag.downstream(4), [false, false, false, false, true]);
    }

    #[test]
    fn levels_are_longest_distances_from_roots() {
        let (dag, problems) = graph(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"]), ("d", &[])]);
        assert!(problems.is_empty());
        let dag = dag.unwrap();
        assert_eq!(
            (0..4).map(|task| dag.level(task)).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        assert_eq!(dag.level_count(), 3);
        assert_eq!(dag.dependants(0), [1, 2]);
        assert_eq!(dag.edge_count(), 3);
    }

    #[test]
    fn a_cycle_is_printed_as_its_path_from_the_smallest_id() {
        let (dag, problems) = graph(&[("c", &["b"]), ("b", &["a"]), ("a", &["c"]), ("x", &["a"])]);
        assert!(dag.is_none());
        assert_eq!(problems, ["tasks form a cycle: a -> b -> c -> a"]);
    }

    #[test]
    fn separate_cycles_are_each_reported_once() {
        let (_, problems) = graph(&[("a", &["b"]), ("b", &["a"]), ("c", &["d"]), ("d", &["c"])]);
        assert_eq!(
            problems,
            [
                "tasks form a cycle: a -> b -> a",
                "tasks form a cycle: c -> d -> c"
            ]
        );
    }

    #[test]
    fn edge_problems_are_all_reported_and_the_rest_still_builds() {
        let (dag, problems) = graph(&[("a", &["a", "zz"]), ("b", &["a", "a", "c"])]);
        assert!(dag.is_some());
        assert_eq!(
            problems,
            [
                "task `a` needs itself",
                "task `a` needs `zz`, which does not exist",
                "task `b` lists `a` in needs twice",
                "task `b` needs `c`, which does not exist",
            ]
        );
    }

    #[test]
    fn ancestry_follows_needs_transitively() {
        let (dag, _) = graph(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &[])]);
        let dag = dag.unwrap();
        let mut seen = Vec::new();
        assert!(dag.is_ancestor(0, 2, &mut seen));
        assert!(!dag.is_ancestor(3, 2, &mut seen));
        assert!(!dag.is_ancestor(2, 0, &mut seen));
    }
}

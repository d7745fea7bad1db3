//! The DAG as Mermaid or Graphviz DOT text, with each task's kind and
//! condition shown, for docs, reviews and `baton graph`.

use std::fmt::Write;

use crate::check::Dag;
use crate::spec::{NeedCondition, TaskKind, Workflow};

/// A `flowchart TD` in Mermaid: approvals are hexagons, no-ops circles,
/// sub-workflows subroutines; a condition is printed under the kind.
pub fn mermaid(workflow: &Workflow, dag: &Dag) -> String {
    let mut out = String::from("flowchart TD\n");
    for (index, task) in workflow.tasks.iter().enumerate() {
        let label = escape_mermaid(&label(task, "<br/>"));
        let (open, close) = match task.kind {
            TaskKind::Approval(_) => ("{{", "}}"),
            TaskKind::Noop => ("((", "))"),
            TaskKind::Workflow(_) => ("[[", "]]"),
            _ => ("[", "]"),
        };
        let _ = writeln!(out, "  t{index}{open}\"{label}\"{close}");
    }
    for task in 0..dag.len() as u32 {
        for &need in dag.needs(task) {
            match edge(workflow, need, task) {
                Edge::Escalate => {
                    let _ = writeln!(out, "  t{need} -. escalate .-> t{task}");
                }
                Edge::Need(NeedCondition::OnSuccess) => {
                    let _ = writeln!(out, "  t{need} --> t{task}");
                }
                Edge::Need(condition) => {
                    let _ = writeln!(out, "  t{need} -- {} --> t{task}", condition.name());
                }
            }
        }
    }
    out
}

/// What an edge `need -> task` of the graph is.
enum Edge {
    /// `need`'s `escalate:`.
    Escalate,
    /// A need, with what it must end as.
    Need(NeedCondition),
}

fn edge(workflow: &Workflow, need: u32, task: u32) -> Edge {
    let (need, task) = (
        &workflow.tasks[need as usize],
        &workflow.tasks[task as usize],
    );
    if need.modifiers().escalate.as_deref() == Some(task.id.as_str()) {
        Edge::Escalate
    } else {
        Edge::Need(task.need_condition(&need.id))
    }
}

/// A `digraph` in DOT, edges pointing from a task to the tasks that need it.
pub fn dot(workflow: &Workflow, dag: &Dag) -> String {
    let mut out = format!(
        "digraph \"{}\" {{\n  rankdir=TB;\n  node [shape=box, fontname=\"sans-serif\"];\n",
        escape_dot(&workflow.name)
    );
    for (index, task) in workflow.tasks.iter().enumerate() {
        let shape = match task.kind {
            TaskKind::Approval(_) => ", shape=hexagon",
            TaskKind::Noop => ", shape=circle",
            TaskKind::Workflow(_) => ", shape=box3d",
            _ => "",
        };
        let style = if task.modifiers().when.is_some() {
            ", style=dashed"
        } else {
            ""
        };
        let _ = writeln!(
            out,
            "  t{index} [label=\"{}\"{shape}{style}];",
            escape_dot(&label(task, "\n"))
        );
    }
    for task in 0..dag.len() as u32 {
        for &need in dag.needs(task) {
            let style = match edge(workflow, need, task) {
                Edge::Escalate => " [style=dotted, label=\"escalate\"]",
                Edge::Need(NeedCondition::OnSuccess) => "",
                Edge::Need(NeedCondition::OnFailure) => {
                    " [style=dashed, color=red, label=\"on_failure\"]"
                }
                Edge::Need(NeedCondition::Always) => " [style=bold, label=\"always\"]",
            };
            let _ = writeln!(out, "  t{need} -> t{task}{style};");
        }
    }
    out.push_str("}\n");
    out
}

fn label(task: &crate::spec::Task, newline: &str) -> String {
    let mut label = format!("{}{newline}{}", task.id, task.kind.name());
    let modifiers = [
        (task.modifiers().foreach.is_some(), "foreach"),
        (task.modifiers().swarm.is_some(), "swarm"),
        (task.modifiers().repeat.is_some(), "repeat"),
        (!task.modifiers().check.is_empty(), "check"),
        (task.modifiers().compensate.is_some(), "compensate"),
        (task.modifiers().verdict, "verdict"),
    ];
    for (_, name) in modifiers.iter().filter(|(present, _)| *present) {
        let _ = write!(label, " · {name}");
    }
    if let Some(when) = &task.modifiers().when {
        let _ = write!(label, "{newline}when: {when}");
    }
    label
}

fn escape_mermaid(text: &str) -> String {
    text.replace('"', "#quot;")
}

fn escape_dot(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Format, check_source};

    const SPEC: &str = "name: ship\ntasks:\n  build: {run: make}\n  approve: {needs: [build], approval: {prompt: Ship?, choices: [yes, no]}}\n  ship:\n    needs: [approve]\n    when: \"tasks.approve.output.choice == 'yes'\"\n    run: ./ship\n";

    #[test]
    fn mermaid_shows_kinds_conditions_and_edges() {
        let valid = check_source(SPEC, Format::Yaml).unwrap();
        expect_test::expect![[r#"
            flowchart TD
              t0["build<br/>run"]
              t1{{"approve<br/>approval"}}
              t2["ship<br/>run<br/>when: tasks.approve.output.choice == 'yes'"]
              t0 --> t1
              t1 --> t2
        "#]]
        .assert_eq(&mermaid(valid.workflow(), valid.dag()));
    }

    #[test]
    fn dot_escapes_labels_and_dashes_conditional_tasks() {
        let valid = check_source(SPEC, Format::Yaml).unwrap();
        expect_test::expect![[r#"
            digraph "ship" {
              rankdir=TB;
              node [shape=box, fontname="sans-serif"];
              t0 [label="build\nrun"];
              t1 [label="approve\napproval", shape=hexagon];
              t2 [label="ship\nrun\nwhen: tasks.approve.output.choice == 'yes'", style=dashed];
              t0 -> t1;
              t1 -> t2;
            }
        "#]]
        .assert_eq(&dot(valid.workflow(), valid.dag()));
    }

    #[test]
    fn need_conditions_label_their_edges_and_a_verdict_its_task() {
        let spec = "name: c\ntasks:\n  work: {run: x}\n  notify: {run: x, needs: [{task: work, condition: on_failure}]}\n  audit: {run: x, verdict: true, needs: [{task: work, condition: always}, notify]}\n";
        let valid = check_source(spec, Format::Yaml).unwrap();
        expect_test::expect![[r#"
            flowchart TD
              t0["work<br/>run"]
              t1["notify<br/>run"]
              t2["audit<br/>run · verdict"]
              t0 -- on_failure --> t1
              t0 -- always --> t2
              t1 --> t2
        "#]]
        .assert_eq(&mermaid(valid.workflow(), valid.dag()));
        let dot = dot(valid.workflow(), valid.dag());
        assert!(
            dot.contains("t0 -> t1 [style=dashed, color=red, label=\"on_failure\"];"),
            "{dot}"
        );
        assert!(
            dot.contains("t0 -> t2 [style=bold, label=\"always\"];"),
            "{dot}"
        );
    }
}

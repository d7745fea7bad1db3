//! Human output: problems drawn by miette over the source, and plans.

use std::io::IsTerminal;

use baton_core::{PlanReport, Problem};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report,
};

use crate::spec_file::SpecFile;

/// Tasks listed per level before the rest are counted instead.
const LEVEL_PREVIEW: usize = 12;

/// Prints each problem with the source line underlined, then a summary line.
pub(crate) fn print(file: &SpecFile, problems: &[Problem]) {
    if problems.is_empty() {
        println!("{}: ok", file.name);
        return;
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    for problem in problems {
        let mut diagnostic =
            MietteDiagnostic::new(problem.message.clone()).with_code(problem.code.as_str());
        if let Some(help) = &problem.help {
            diagnostic = diagnostic.with_help(help.clone());
        }
        if let Some(location) = problem.location {
            let label = if problem.path.is_root() {
                "here".to_owned()
            } else {
                problem.path.to_string()
            };
            diagnostic = diagnostic.with_label(LabeledSpan::at(
                location.offset..location.offset + location.length,
                label,
            ));
        }
        let report = Report::new(diagnostic)
            .with_source_code(NamedSource::new(&file.name, file.text.clone()));
        let mut out = String::new();
        if handler.render_report(&mut out, report.as_ref()).is_ok() {
            println!("{out}");
        }
    }
    let count = problems.len();
    println!(
        "{}: {count} problem{}",
        file.name,
        if count == 1 { "" } else { "s" }
    );
}

pub(crate) fn print_plan(plan: &PlanReport<'_>, edges: usize) {
    println!(
        "workflow {}: {} tasks, {edges} edges, {} levels, max width {}",
        plan.workflow,
        plan.tasks,
        plan.levels.len(),
        plan.max_width
    );
    println!(
        "critical path ({}): {}",
        plan.critical_path_estimate,
        plan.critical_path.join(" -> ")
    );
    println!("one at a time: {}", plan.serial_estimate);
    println!();
    let digits = plan.levels.len().to_string().len();
    for (level, tasks) in plan.levels.iter().enumerate() {
        let shown = tasks[..tasks.len().min(LEVEL_PREVIEW)].join(", ");
        let more = tasks.len().saturating_sub(LEVEL_PREVIEW);
        let rest = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        println!("level {:>digits$}  {shown}{rest}", level + 1);
    }
}

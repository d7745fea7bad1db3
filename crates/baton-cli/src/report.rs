//! Human output: problems drawn by miette over the source, and plans.

use std::io::IsTerminal;

use baton_core::{PlanReport, Problem};
use miette::{
    GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, MietteError,
    MietteSpanContents, NamedSource, Report, SourceCode, SourceSpan, SpanContents,
};

use crate::spec_file::SpecFile;

/// Tasks listed per level before the rest are counted instead.
const LEVEL_PREVIEW: usize = 12;

/// Bytes of a source line shown whole under a problem; a longer line (a
/// minified spec is one line) is shown as a window around the problem.
const LONG_LINE: usize = 240;

/// Bytes shown on each side of a problem in a long line.
const WINDOW: usize = 80;

/// Problems drawn over the source; past them a spec's problems are only
/// counted (`--json` lists every one).
const SHOWN: usize = 50;

/// Prints each problem (up to [`SHOWN`]) with the source line underlined,
/// then a summary line.
pub(crate) fn print(file: &SpecFile, problems: &[Problem]) {
    if problems.is_empty() {
        crate::out::out!("{}: ok", file.name);
        return;
    }
    let colour = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let theme = if colour {
        GraphicalTheme::unicode()
    } else {
        GraphicalTheme::unicode_nocolor()
    };
    let lines = Lines::new(&file.text);
    let handler = GraphicalReportHandler::new_themed(theme)
        .with_width(100)
        .with_links(false);
    for problem in problems.iter().take(SHOWN) {
        let mut diagnostic =
            MietteDiagnostic::new(problem.message.clone()).with_code(problem.code.as_str());
        if let Some(help) = &problem.help {
            diagnostic = diagnostic.with_help(help.clone());
        }
        let mut window = None;
        if let Some(location) = problem.location {
            let label = if problem.path.is_root() {
                "here".to_owned()
            } else {
                problem.path.to_string()
            };
            let mut span = location.offset..location.offset + location.length;
            if let Some(shown) = Window::around(&file.text, &lines, location) {
                span.end = span.end.min(shown.end);
                let note = format!(
                    "line {} is {} bytes long: columns {} to {} shown",
                    location.line,
                    shown.line_length,
                    shown.column + 1,
                    shown.column + file.text[shown.start..shown.end].chars().count(),
                );
                diagnostic = diagnostic.with_help(match &problem.help {
                    Some(help) => format!("{help} ({note})"),
                    None => note,
                });
                window = Some(shown);
            }
            diagnostic = diagnostic.with_label(LabeledSpan::at(span, label));
        }
        let report = match window {
            Some(window) => Report::new(diagnostic).with_source_code(Windowed {
                name: file.name.clone(),
                text: std::sync::Arc::clone(&file.text),
                window,
            }),
            None => Report::new(diagnostic)
                .with_source_code(NamedSource::new(&file.name, file.text.clone())),
        };
        let mut out = String::new();
        if handler.render_report(&mut out, report.as_ref()).is_ok() {
            crate::out::out!("{out}");
        }
    }
    let count = problems.len();
    let unshown = if count > SHOWN {
        format!(" ({} not shown: --json lists them all)", count - SHOWN)
    } else {
        String::new()
    };
    crate::out::out!(
        "{}: {count} problem{}{unshown}",
        file.name,
        if count == 1 { "" } else { "s" }
    );
}

/// Part of one long source line, shown in place of the lines around a
/// problem when any of them is too long to print.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Window {
    start: usize,
    end: usize,
    /// The 0-based line and character column the window starts at.
    line: usize,
    column: usize,
    /// The 0-based character column of the problem itself.
    problem_column: usize,
    line_length: usize,
}

impl Window {
    /// The window for a problem at `location`, if the lines miette would
    /// show around it are not all short. `lines` holds where each line of
    /// `text` starts, so that many problems on one long line cost no scan
    /// of it each.
    fn around(text: &str, lines: &Lines, location: baton_core::Location) -> Option<Window> {
        let offset = location.offset.min(text.len());
        let line = lines.line_of(offset);
        let (line_start, line_end) = lines.bounds(line, text);
        let neighbours = line.saturating_sub(1)..=(line + 1).min(lines.count() - 1);
        let longest = neighbours
            .map(|line| {
                let (start, end) = lines.bounds(line, text);
                end - start
            })
            .max()
            .unwrap_or(0);
        if longest <= LONG_LINE {
            return None;
        }
        let mut start = offset.saturating_sub(WINDOW).max(line_start);
        let mut end = (offset + location.length + WINDOW).min(line_end);
        while !text.is_char_boundary(start) {
            start -= 1;
        }
        while !text.is_char_boundary(end) {
            end += 1;
        }
        Some(Window {
            start,
            end,
            line,
            // The problem's own column, less the characters shown before it.
            column: location
                .column
                .saturating_sub(1 + text[start..offset].chars().count()),
            problem_column: location.column.saturating_sub(1),
            line_length: line_end - line_start,
        })
    }
}

/// Where each line of a text starts.
struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        Lines {
            starts: std::iter::once(0)
                .chain(text.match_indices('\n').map(|(index, _)| index + 1))
                .collect(),
        }
    }

    fn count(&self) -> usize {
        self.starts.len()
    }

    /// The 0-based line holding `offset`.
    fn line_of(&self, offset: usize) -> usize {
        self.starts.partition_point(|&start| start <= offset) - 1
    }

    /// Where `line` starts and ends (before its newline).
    fn bounds(&self, line: usize, text: &str) -> (usize, usize) {
        let end = self
            .starts
            .get(line + 1)
            .map_or(text.len(), |&next| next - 1);
        (self.starts[line], end)
    }
}

/// A spec's text that shows miette only a [`Window`] of it.
struct Windowed {
    name: String,
    text: std::sync::Arc<String>,
    window: Window,
}

impl SourceCode for Windowed {
    /// The window, with its context; a span alone (what miette asks for
    /// the `file:line:column` heading) as itself.
    fn read_span<'a>(
        &'a self,
        span: &SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let Window {
            start,
            end,
            line,
            column,
            problem_column,
            ..
        } = self.window;
        // Only the problem's own span is asked for alone.
        let (start, end, column) = if before == 0 && after == 0 && span.offset() >= start {
            let from = span.offset().min(self.text.len());
            let to = (from + span.len()).min(self.text.len());
            if !self.text.is_char_boundary(from) || !self.text.is_char_boundary(to) {
                return Err(MietteError::OutOfBounds);
            }
            (from, to, problem_column)
        } else {
            (start, end, column)
        };
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            self.text[start..end].as_bytes(),
            (start, end - start).into(),
            line,
            column,
            1,
        )))
    }
}

pub(crate) fn print_plan(plan: &PlanReport<'_>, edges: usize) {
    crate::out::out!(
        "workflow {}: {} tasks, {edges} edges, {} levels, max width {}",
        plan.workflow,
        plan.tasks,
        plan.levels.len(),
        plan.max_width
    );
    crate::out::out!(
        "critical path ({}): {}",
        plan.critical_path_estimate,
        plan.critical_path.join(" -> ")
    );
    crate::out::out!("one at a time: {}", plan.serial_estimate);
    crate::out::out!();
    let digits = plan.levels.len().to_string().len();
    for (level, tasks) in plan.levels.iter().enumerate() {
        let shown = tasks[..tasks.len().min(LEVEL_PREVIEW)].join(", ");
        let more = tasks.len().saturating_sub(LEVEL_PREVIEW);
        let rest = if more > 0 {
            format!(" (+{more} more)")
        } else {
            String::new()
        };
        crate::out::out!("level {:>digits$}  {shown}{rest}", level + 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: usize) -> baton_core::Location {
        baton_core::Location {
            line: 1,
            column: offset + 1,
            offset,
            length: 4,
        }
    }

    #[test]
    fn short_lines_are_shown_whole() {
        let text = "a: 1\nb: 2\n";
        assert_eq!(Window::around(text, &Lines::new(text), at(5)), None);
    }

    #[test]
    fn a_long_line_is_shown_as_a_window_around_the_problem() {
        let text = format!("{}ñope{}", "x".repeat(1000), "y".repeat(1000));
        let window = Window::around(&text, &Lines::new(&text), at(1000)).unwrap();
        assert_eq!(
            (window.start, window.end),
            (1000 - WINDOW, 1005 + WINDOW - 1)
        );
        assert_eq!(window.column, 1000 - WINDOW);
        assert_eq!(window.line_length, 2005);
    }
}

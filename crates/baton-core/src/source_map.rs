//! Where each part of a document sits in its source text.
//!
//! Problems are found on the typed model, which knows nothing of lines; they
//! carry a [`Path`]. The map turns paths back into line:col by walking the
//! YAML parser's events (JSON is read as YAML flow syntax). It is built only
//! when there is something to report, so clean specs never pay for it.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Marker, Parser, Span};

use crate::problem::{Location, Path, Problem, Segment, Target};

/// Source positions of the keys and values of one document.
#[derive(Debug, Default)]
pub struct SourceMap {
    entries: HashMap<Path, Entry>,
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    key: Option<Location>,
    value: Location,
}

enum Frame {
    Mapping {
        pending_key: Option<(String, Location)>,
    },
    Sequence {
        next_index: usize,
    },
    /// A complex key (a mapping or list used as a key): not addressable.
    Ignored,
}

impl SourceMap {
    /// Maps every key and value of `text`; stops quietly at a syntax error,
    /// keeping what it saw before it.
    pub fn new(text: &str) -> SourceMap {
        let mut map = SourceMap::default();
        let mut path = Path::root();
        let mut stack: Vec<Frame> = Vec::new();
        let lines = Lines::new(text);
        for event in Parser::new_from_str(text) {
            let Ok((event, span)) = event else { break };
            let location = lines.location(text, &span);
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(Frame::Mapping { pending_key }) = stack.last_mut()
                        && pending_key.is_none()
                    {
                        *pending_key = Some((value.into_owned(), location));
                        continue;
                    }
                    map.enter_value(&mut stack, &mut path, location);
                    map.leave_value(&mut stack, &mut path);
                }
                Event::Alias(_) => {
                    map.enter_value(&mut stack, &mut path, location);
                    map.leave_value(&mut stack, &mut path);
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let is_complex_key = matches!(
                        stack.last(),
                        Some(Frame::Mapping { pending_key: None }) | Some(Frame::Ignored)
                    );
                    if is_complex_key {
                        stack.push(Frame::Ignored);
                        continue;
                    }
                    map.enter_value(&mut stack, &mut path, location);
                    stack.push(match event {
                        Event::MappingStart(..) => Frame::Mapping { pending_key: None },
                        _ => Frame::Sequence { next_index: 0 },
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    if let Some(Frame::Ignored) = stack.pop() {
                        if let Some(Frame::Mapping { pending_key }) = stack.last_mut()
                            && pending_key.is_none()
                        {
                            *pending_key = Some((String::new(), location));
                        }
                        continue;
                    }
                    map.leave_value(&mut stack, &mut path);
                }
                _ => {}
            }
        }
        map
    }

    /// Records the value starting at `location` under the current frame and
    /// steps the path into it.
    fn enter_value(&mut self, stack: &mut [Frame], path: &mut Path, location: Location) {
        let (segment, key) = match stack.last_mut() {
            Some(Frame::Mapping { pending_key }) => match pending_key.take() {
                Some((key, key_location)) => (Segment::Key(key), Some(key_location)),
                None => return,
            },
            Some(Frame::Sequence { next_index }) => {
                *next_index += 1;
                (Segment::Index(*next_index - 1), None)
            }
            Some(Frame::Ignored) => return,
            None => {
                self.entries.insert(
                    Path::root(),
                    Entry {
                        key: None,
                        value: location,
                    },
                );
                return;
            }
        };
        path.push(segment);
        self.entries.insert(
            path.clone(),
            Entry {
                key,
                value: location,
            },
        );
    }

    fn leave_value(&mut self, stack: &mut [Frame], path: &mut Path) {
        if !matches!(stack.last(), Some(Frame::Ignored)) && !path.is_root() {
            path.pop();
        }
    }

    /// The position of `path`, or of its nearest ancestor that the source
    /// has (a missing field points at the mapping that lacks it).
    pub fn locate(&self, path: &Path, target: Target) -> Option<Location> {
        let mut current = path.clone();
        let mut exact = true;
        loop {
            if let Some(entry) = self.entries.get(&current) {
                return Some(match (exact, target) {
                    (true, Target::Value) => entry.value,
                    _ => entry.key.unwrap_or(entry.value),
                });
            }
            if current.is_root() {
                return None;
            }
            current = current.parent();
            exact = false;
        }
    }

    /// Fills in the location of every problem that lacks one.
    pub fn locate_all(text: &str, problems: &mut [Problem]) {
        if problems.iter().all(|problem| problem.location.is_some()) {
            return;
        }
        let map = SourceMap::new(text);
        for problem in problems
            .iter_mut()
            .filter(|problem| problem.location.is_none())
        {
            problem.location = map.locate(&problem.path, problem.target);
        }
    }
}

/// Where each line starts, so that a position is found by a binary search
/// instead of a scan: a minified spec is one line of megabytes, and each of
/// its values would otherwise scan to the end of it.
pub(crate) struct Lines {
    starts: Vec<usize>,
}

impl Lines {
    pub(crate) fn new(text: &str) -> Lines {
        let starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(index, _)| index + 1))
            .collect();
        Lines { starts }
    }

    /// Where the line holding `offset` ends (its newline, or the text's end).
    fn end_of_line(&self, text: &str, offset: usize) -> usize {
        let next = self.starts.partition_point(|&start| start <= offset);
        self.starts.get(next).map_or(text.len(), |&start| start - 1)
    }

    /// The byte offset of a 1-based line and character column.
    pub(crate) fn offset_of(&self, text: &str, line: usize, column: usize) -> Option<usize> {
        let start = *self.starts.get(line.checked_sub(1)?)?;
        let rest = &text[start..self.end_of_line(text, start)];
        let within = rest
            .char_indices()
            .nth(column.saturating_sub(1))
            .map_or(rest.len(), |(index, _)| index);
        Some(start + within)
    }

    fn offset(&self, text: &str, marker: &Marker) -> usize {
        marker
            .byte_offset()
            .or_else(|| self.offset_of(text, marker.line(), marker.col() + 1))
            .unwrap_or(text.len())
            .min(text.len())
    }

    fn location(&self, text: &str, span: &Span) -> Location {
        let start = self.offset(text, &span.start);
        let end = self.offset(text, &span.end).max(start);
        Location {
            line: span.start.line(),
            column: span.start.col() + 1,
            offset: start,
            length: end
                .min(self.end_of_line(text, start))
                .saturating_sub(start)
                .max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, path: Path, target: Target) -> (usize, usize) {
        let location = SourceMap::new(text).locate(&path, target).unwrap();
        (location.line, location.column)
    }

    #[test]
    fn finds_keys_values_and_list_items_in_yaml() {
        let text = "name: w\ntasks:\n  build:\n    needs: [a, b]\n    run: make\n";
        assert_eq!(at(text, Path::task("build"), Target::Key), (3, 3));
        assert_eq!(
            at(
                text,
                Path::task("build").key("needs").index(1),
                Target::Value
            ),
            (4, 16)
        );
        assert_eq!(
            at(text, Path::task("build").key("run"), Target::Value),
            (5, 10)
        );
        assert_eq!(
            at(text, Path::task("build").key("run"), Target::Key),
            (5, 5)
        );
    }

    #[test]
    fn finds_paths_in_json() {
        let text = "{\n  \"name\": \"w\",\n  \"tasks\": {\"a\": {\"needs\": [\"x\"]}}\n}";
        assert_eq!(
            at(text, Path::task("a").key("needs").index(0), Target::Value),
            (3, 29)
        );
    }

    #[test]
    fn a_missing_path_falls_back_to_its_nearest_ancestor() {
        let text = "name: w\ntasks:\n  a:\n    run: x\n";
        assert_eq!(
            at(text, Path::task("a").key("retry").key("max"), Target::Value),
            (3, 3)
        );
    }

    #[test]
    fn lines_are_found_by_their_starts() {
        let text = "ab\nçd\n\nx";
        let lines = Lines::new(text);
        assert_eq!(lines.end_of_line(text, 0), 2);
        assert_eq!(lines.end_of_line(text, 3), 6);
        assert_eq!(lines.end_of_line(text, 7), 7);
        assert_eq!(lines.end_of_line(text, 8), 9);
        assert_eq!(lines.offset_of(text, 2, 2), Some(5));
        assert_eq!(lines.offset_of(text, 4, 1), Some(8));
        assert_eq!(lines.offset_of(text, 5, 1), None);
    }

    #[test]
    fn a_repeated_key_points_at_its_last_occurrence() {
        let text = "tasks:\n  a: {noop: true}\n  a: {noop: true}\n";
        assert_eq!(at(text, Path::task("a"), Target::Key), (3, 3));
    }
}

//! Templates inside heredoc bodies. A templated value reaches a `run:`
//! script as an environment variable, referenced with the quotes its place
//! needs (`"${BATON_VALUE_0}"` in bare text). A heredoc body is not bare
//! text: the shell keeps those quotes as data (`VERSION="1.2.3"`), or, with
//! a quoted delimiter (`<<'EOF'`), expands nothing at all. So a `{{ }}` in a
//! heredoc body is refused when the spec is checked, and the value is
//! passed through `env:` instead, where the script names it itself.

/// The byte offset of the first `{{` inside a heredoc body of `script`.
pub(crate) fn template_in_heredoc(script: &str) -> Option<usize> {
    let mut bodies: std::collections::VecDeque<Heredoc> = std::collections::VecDeque::new();
    let mut offset = 0;
    for line in script.split_inclusive('\n') {
        let start = offset;
        offset += line.len();
        if let Some(body) = bodies.front() {
            let content = line.trim_end_matches(['\n', '\r']);
            let content = if body.strip_tabs {
                content.trim_start_matches('\t')
            } else {
                content
            };
            if content == body.delimiter {
                bodies.pop_front();
            } else if let Some(at) = line.find("{{") {
                return Some(start + at);
            }
            continue;
        }
        bodies.extend(operators(line));
    }
    None
}

/// A heredoc a line opens: its body starts on the next line.
struct Heredoc {
    delimiter: String,
    /// `<<-`: leading tabs of the body and the closing line are dropped.
    strip_tabs: bool,
}

/// The heredocs `line` opens, outside quotes and comments, in order.
fn operators(line: &str) -> Vec<Heredoc> {
    let bytes = line.as_bytes();
    let mut found = Vec::new();
    let (mut single, mut double) = (false, false);
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'\\' if !single => index += 1,
            b'\'' if !double => single = !single,
            b'"' if !single => double = !double,
            b'#' if !single
                && !double
                && (index == 0 || bytes[index - 1].is_ascii_whitespace()) =>
            {
                break;
            }
            b'<' if !single && !double && bytes.get(index + 1) == Some(&b'<') => {
                // `<<<` is a here-string, not a heredoc.
                if bytes.get(index + 2) == Some(&b'<') {
                    index += 3;
                    continue;
                }
                let mut at = index + 2;
                let strip_tabs = bytes.get(at) == Some(&b'-');
                if strip_tabs {
                    at += 1;
                }
                while matches!(bytes.get(at), Some(b' ' | b'\t')) {
                    at += 1;
                }
                let (delimiter, end) = word(line, at);
                if !delimiter.is_empty() {
                    found.push(Heredoc {
                        delimiter,
                        strip_tabs,
                    });
                }
                index = end;
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    found
}

/// The delimiter word starting at `at`, its quotes and backslashes removed,
/// and where it ends.
fn word(line: &str, at: usize) -> (String, usize) {
    let mut delimiter = String::new();
    let mut quote = None;
    let mut chars = line[at..].char_indices().peekable();
    while let Some((position, character)) = chars.next() {
        match (quote, character) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), c) => delimiter.push(c),
            (None, '\'' | '"') => quote = Some(character),
            (None, '\\') => {
                if let Some((_, next)) = chars.next() {
                    delimiter.push(next);
                }
            }
            (None, c) if c.is_whitespace() || ";&|<>()".contains(c) => {
                return (delimiter, at + position);
            }
            (None, c) => delimiter.push(c),
        }
    }
    (delimiter, line.len())
}

#[cfg(test)]
mod tests {
    use super::template_in_heredoc;

    #[test]
    fn a_template_in_a_heredoc_body_is_found_and_one_outside_is_not() {
        let inside = "cat > v.env <<EOF\nVERSION={{ inputs.v }}\nEOF\n";
        assert_eq!(template_in_heredoc(inside), Some(26));
        for script in [
            "cat <<'EOF'\n{{ inputs.v }}\nEOF\n",
            "cat <<-\"END\" > f\n\tx {{ inputs.v }}\n\tEND\n",
            "cat <<A <<B\na\nA\n{{ inputs.v }}\nB\n",
        ] {
            assert!(template_in_heredoc(script).is_some(), "{script}");
        }
        for script in [
            "echo {{ inputs.v }}",
            "cat <<EOF\nplain\nEOF\necho {{ inputs.v }}\n",
            "cat <<< {{ inputs.v }}\n",
            "echo '<<EOF'\n{{ inputs.v }}\n",
            "echo hi # <<EOF\n{{ inputs.v }}\n",
            "[ 1 -lt 2 ] && echo {{ inputs.v }}\n",
        ] {
            assert_eq!(template_in_heredoc(script), None, "{script}");
        }
    }
}

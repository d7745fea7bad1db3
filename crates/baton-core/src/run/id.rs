//! Run ids: each names the directory of its run's files and sits in URLs
//! and listing cursors, so it keeps to characters that are safe in all
//! three.

/// The longest run id: with a task id and an attempt beside it, a run's
/// file names stay within what file systems take.
pub const MAX_RUN_ID: usize = 128;

/// Why `id` cannot name a run, if it cannot.
pub fn run_id_problem(id: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    let Some(first) = id.chars().next() else {
        return Some("a run id cannot be empty".to_owned());
    };
    if id.len() > MAX_RUN_ID {
        Some(format!(
            "a run id is at most {MAX_RUN_ID} characters; this one has {}",
            id.len()
        ))
    } else if !(first.is_ascii_alphanumeric() || first == '_') || !id.chars().all(allowed) {
        Some(format!(
            "run id `{}` is not valid: use letters, digits, `_`, `-` and `.`, starting with a letter, a digit or `_`",
            id.escape_debug()
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_id_is_safe_as_a_file_name_and_in_a_url() {
        for good in ["01a234e0-f3ef-71ab", "nightly_2026.12.01", "7"] {
            assert_eq!(run_id_problem(good), None, "{good}");
        }
        for bad in [
            "",
            "a b",
            "../etc",
            "a/b",
            ".hidden",
            "-flag",
            "é",
            "x\n",
            &"x".repeat(129),
        ] {
            assert!(run_id_problem(bad).is_some(), "{bad:?}");
        }
    }
}

//! Where a run keeps its files, and reading the end of a log.
//!
//! `STATE_DIR/runs/RUN/tasks/TASK/ATTEMPT/` holds `stdout.log`,
//! `stderr.log` and `output.json` (the file `$BATON_OUTPUT` names).

use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const OUTPUT_FILE: &str = "output.json";

/// The directory of one attempt's files.
pub fn attempt_dir(state_dir: &Path, run_id: &str, task_id: &str, attempt: u32) -> PathBuf {
    state_dir
        .join("runs")
        .join(run_id)
        .join("tasks")
        .join(task_id)
        .join(attempt.to_string())
}

/// The directory of a task's compensation action.
pub fn compensation_dir(state_dir: &Path, run_id: &str, task_id: &str) -> PathBuf {
    state_dir
        .join("runs")
        .join(run_id)
        .join("tasks")
        .join(task_id)
        .join("compensate")
}

/// The last `lines` lines of a file (reading at most its last 64 KiB), or
/// nothing when it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    const WINDOW: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map_or(0, |metadata| metadata.len());
    if file
        .seek(SeekFrom::Start(length.saturating_sub(WINDOW)))
        .is_err()
    {
        return String::new();
    }
    let mut bytes = Vec::new();
    if file.read_to_end(&mut bytes).is_err() {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        std::fs::write(&path, "1\n2\n3\n4\n").unwrap();
        assert_eq!(tail(&path, 2), "3\n4");
        assert_eq!(tail(&path, 10), "1\n2\n3\n4");
        assert_eq!(tail(&dir.path().join("missing"), 3), "");
    }
}

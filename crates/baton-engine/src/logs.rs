//! Where a run keeps its files, and reading the end of a log.
//!
//! `STATE_DIR/runs/RUN/tasks/` holds every attempt's files side by side,
//! named by the attempt's prefix `TASK.ATTEMPT`: `TASK.ATTEMPT.stdout.log`,
//! `TASK.ATTEMPT.stderr.log` and `TASK.ATTEMPT.output.json` (the file
//! `$BATON_OUTPUT` names); a swarm's copy or a foreach's item adds its name
//! (`TASK.ATTEMPT.item-3.stdout.log`). No directory per attempt: on ext4 a
//! new directory costs about 2 ms (its inode is placed by a search across
//! block groups), a new file a tenth of that, and the shell-task path
//! creates these for every task (task ids hold no `.`, so names cannot
//! collide).

use std::collections::HashMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

pub const STDOUT_FILE: &str = "stdout.log";
pub const STDERR_FILE: &str = "stderr.log";
pub const OUTPUT_FILE: &str = "output.json";

/// The prefix of one attempt's files (see [`attempt_file`]).
pub fn attempt_prefix(state_dir: &Path, run_id: &str, task_id: &str, attempt: u32) -> PathBuf {
    tasks_dir(&state_dir.join("runs").join(run_id)).join(format!("{task_id}.{attempt}"))
}

fn tasks_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("tasks")
}

/// One of an attempt's files: `PREFIX.FILE`.
pub fn attempt_file(prefix: &Path, file: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(".");
    name.push(file);
    PathBuf::from(name)
}

/// The prefix of a task's compensation action's files.
pub fn compensation_prefix(state_dir: &Path, run_id: &str, task_id: &str) -> PathBuf {
    tasks_dir(&state_dir.join("runs").join(run_id)).join(format!("{task_id}.compensate"))
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

/// New bytes of one attempt's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogChunk {
    pub task: String,
    pub attempt: u32,
    /// [`STDOUT_FILE`] or [`STDERR_FILE`].
    pub stream: &'static str,
    pub bytes: Vec<u8>,
}

/// Reads what a run's task logs gained since the last look, for following
/// a run as it goes. It reads the files the attempts write, so it works
/// from any process on the machine that drives the run.
#[derive(Debug)]
pub struct LogFollower {
    run_dir: PathBuf,
    /// One attempt only; otherwise each task's attempt current at its
    /// first sighting and every later one.
    attempt: Option<u32>,
    first: HashMap<String, u32>,
    offsets: HashMap<(String, u32, &'static str), u64>,
}

impl LogFollower {
    pub fn new(state_dir: &Path, run_id: &str, attempt: Option<u32>) -> LogFollower {
        LogFollower {
            run_dir: state_dir.join("runs").join(run_id),
            attempt,
            first: HashMap::new(),
            offsets: HashMap::new(),
        }
    }

    /// What was appended since the last call to the logs of `tasks`, each
    /// given with the number of attempts it has started, in that order.
    pub fn poll<'a>(
        &mut self,
        tasks: impl IntoIterator<Item = (&'a str, u32)>,
    ) -> std::io::Result<Vec<LogChunk>> {
        let mut chunks = Vec::new();
        for (task, attempts) in tasks {
            if attempts == 0 {
                continue;
            }
            let range = match self.attempt {
                Some(only) => only..=only.min(attempts),
                None => *self.first.entry(task.to_owned()).or_insert(attempts)..=attempts,
            };
            for attempt in range {
                for stream in [STDOUT_FILE, STDERR_FILE] {
                    let path = attempt_file(
                        &tasks_dir(&self.run_dir).join(format!("{task}.{attempt}")),
                        stream,
                    );
                    let offset = self
                        .offsets
                        .entry((task.to_owned(), attempt, stream))
                        .or_default();
                    let bytes = read_from(&path, offset)?;
                    if !bytes.is_empty() {
                        chunks.push(LogChunk {
                            task: task.to_owned(),
                            attempt,
                            stream,
                            bytes,
                        });
                    }
                }
            }
        }
        Ok(chunks)
    }
}

/// The bytes of `path` after `offset`, moving `offset` past them; nothing
/// if the file does not exist yet.
fn read_from(path: &Path, offset: &mut u64) -> std::io::Result<Vec<u8>> {
    let mut file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(error),
    };
    file.seek(SeekFrom::Start(*offset))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    *offset += bytes.len() as u64;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_follower_returns_only_what_was_appended_and_picks_up_new_attempts() {
        let dir = tempfile::tempdir().unwrap();
        let log = |attempt: u32, text: &str| {
            let prefix = attempt_prefix(dir.path(), "r", "t", attempt);
            std::fs::create_dir_all(prefix.parent().unwrap()).unwrap();
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(attempt_file(&prefix, STDOUT_FILE))
                .unwrap();
            std::io::Write::write_all(&mut file, text.as_bytes()).unwrap();
        };
        let mut follower = LogFollower::new(dir.path(), "r", None);
        assert!(follower.poll([("t", 0)]).unwrap().is_empty());
        log(1, "one\n");
        let texts = |chunks: Vec<LogChunk>| -> Vec<(u32, String)> {
            chunks
                .into_iter()
                .map(|chunk| (chunk.attempt, String::from_utf8(chunk.bytes).unwrap()))
                .collect()
        };
        assert_eq!(
            texts(follower.poll([("t", 1)]).unwrap()),
            [(1, "one\n".to_owned())]
        );
        log(1, "two\n");
        log(2, "again\n");
        assert_eq!(
            texts(follower.poll([("t", 2)]).unwrap()),
            [(1, "two\n".to_owned()), (2, "again\n".to_owned())]
        );
        assert!(follower.poll([("t", 2)]).unwrap().is_empty());
    }

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

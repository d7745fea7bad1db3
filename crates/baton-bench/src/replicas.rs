//! `baton serve` replicas of this very binary on one PostgreSQL schema,
//! for the benchmarks that kill one or listen to another.

use std::io::BufRead;
use std::process::{Child, Command, Stdio};

use anyhow::Context;

/// A replica, killed when dropped.
pub(crate) struct Replica {
    child: Child,
    pub(crate) address: String,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A replica on `store`; with `elsewhere`, under another host name (a UTS
/// namespace of its own, which needs root), so the others cannot see that
/// its process died and wait for its lease to run out, as replicas on
/// other machines do.
pub(crate) fn replica(
    store: &str,
    state_dir: &std::path::Path,
    elsewhere: bool,
    env: &[(&str, &str)],
) -> anyhow::Result<Replica> {
    let program = std::env::current_exe()?;
    let mut command = match elsewhere {
        true => {
            let mut command = Command::new("unshare");
            command
                .args([
                    "--uts",
                    "sh",
                    "-c",
                    "hostname baton-elsewhere && exec \"$0\" \"$@\"",
                ])
                .arg(program);
            command
        }
        false => Command::new(program),
    };
    let mut child = command
        .args([
            "serve",
            "--bind",
            "127.0.0.1:0",
            "--insecure-no-auth",
            "--store",
            store,
        ])
        .envs(env.iter().copied())
        .arg("--state-dir")
        .arg(state_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .context("cannot start a replica")?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().context("no stdout")?).read_line(&mut line)?;
    let address = line
        .trim()
        .strip_prefix("baton serving on http://")
        .with_context(|| format!("unexpected first line: {line}"))?
        .to_owned();
    Ok(Replica { child, address })
}

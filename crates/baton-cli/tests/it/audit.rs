//! `baton verify`, `replay`, `provenance` and `--seed` on recorded runs.

use serde_json::Value;

use crate::util::{baton, workspace};

/// Runs the fan-out example with a seeded id in `home`; its JSON report.
fn seeded_run(home: &std::path::Path) -> Value {
    let output = baton()
        .args(["run", "--json", "--seed", "7", "--state-dir"])
        .arg(home)
        .arg(workspace().join("examples/fan-out-fan-in.json"))
        .current_dir(home)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

fn audit(home: &std::path::Path, command: &str, run: &str) -> (bool, String) {
    let output = baton()
        .args([command, run, "--state-dir"])
        .arg(home)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8(output.stdout).unwrap(),
    )
}

#[test]
fn a_seed_gives_the_same_run_id_and_a_second_run_reports_the_first() {
    let one = tempfile::tempdir().unwrap();
    let two = tempfile::tempdir().unwrap();
    let first = seeded_run(one.path());
    assert_eq!(seeded_run(two.path())["run_id"], first["run_id"]);
    let again = seeded_run(one.path());
    assert_eq!(again["run_id"], first["run_id"]);
    assert_eq!(again["trace"], first["trace"], "reported, not run again");
}

#[test]
fn a_seed_given_again_with_an_edited_spec_leaves_the_recorded_run_alone() {
    let home = tempfile::tempdir().unwrap();
    let spec = home.path().join("steps.yaml");
    let run = |text: &str| {
        std::fs::write(&spec, text).unwrap();
        baton()
            .current_dir(home.path())
            .args(["run", "steps.yaml", "--seed", "7"])
            .output()
            .unwrap()
    };
    assert!(
        run("name: steps\ntasks:\n  a: {run: 'true'}\n")
            .status
            .success()
    );
    let edited = run("name: steps\ntasks:\n  a: {run: 'true'}\n  b: {run: 'false'}\n");
    assert_eq!(edited.status.code(), Some(1));
    let said = String::from_utf8_lossy(&edited.stderr);
    assert!(
        said.contains("was made from a different version of this workflow; it is left as it is"),
        "{said}"
    );
}

#[test]
fn replay_prints_the_trace_of_the_original_run() {
    let home = tempfile::tempdir().unwrap();
    let report = seeded_run(home.path());
    let run = report["run_id"].as_str().unwrap();
    let (ok, text) = audit(home.path(), "replay", run);
    assert!(ok, "{text}");
    let trace = report["trace"].as_str().unwrap();
    assert!(text.starts_with(&format!("trace {trace}")), "{text}");
}

#[test]
fn verify_names_the_task_whose_record_was_edited_by_hand() {
    let home = tempfile::tempdir().unwrap();
    let report = seeded_run(home.path());
    let run = report["run_id"].as_str().unwrap();
    let (ok, text) = audit(home.path(), "verify", run);
    assert!(ok, "{text}");
    let (_, exported) = audit(home.path(), "provenance", run);
    assert!(exported.contains(&format!(
        "root {}",
        report["provenance_root"].as_str().unwrap()
    )));

    let database = rusqlite::Connection::open(home.path().join("baton.db")).unwrap();
    let edited = database
        .execute(
            "UPDATE provenance SET output = zeroblob(32)
             WHERE task = (SELECT task FROM tasks WHERE name = 'shard-1')",
            [],
        )
        .unwrap();
    assert_eq!(edited, 1);
    let (ok, text) = audit(home.path(), "verify", run);
    assert!(!ok);
    assert!(text.contains("task `shard-1`"), "{text}");
    assert!(text.contains("altered"), "{text}");
}

#[test]
fn verify_catches_an_edited_event() {
    let home = tempfile::tempdir().unwrap();
    let report = seeded_run(home.path());
    let run = report["run_id"].as_str().unwrap();
    let database = rusqlite::Connection::open(home.path().join("baton.db")).unwrap();
    // Forge where the first shard starts in split's recorded output.
    let edited = database
        .execute(
            "UPDATE event_batches SET events = replace(events, '\"shards\":[[1,', '\"shards\":[[2,')",
            [],
        )
        .unwrap();
    assert!(edited > 0);
    let (ok, text) = audit(home.path(), "verify", run);
    assert!(!ok, "{text}");
    assert!(text.contains("MISMATCH at task `split`"), "{text}");
}

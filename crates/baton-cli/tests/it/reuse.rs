//! Results that outlive their run: artifacts, the cache, `baton rerun`,
//! and `baton gc` deleting what is old.

use serde_json::Value;

use crate::util::{baton, lines, run_in, task};

#[test]
fn a_second_run_of_the_artifacts_example_is_cached_and_a_rerun_runs_from_a_task() {
    let dir = tempfile::tempdir().unwrap();
    let example = "examples/artifacts-and-cache.yaml";
    let first = lines(
        &run_in(dir.path(), &[example, "--json"])
            .success()
            .get_output()
            .stdout,
    )
    .pop()
    .unwrap();
    std::fs::remove_dir_all(dir.path().join(".baton/work")).unwrap();
    let summary = run_in(dir.path(), &[example])
        .success()
        .get_output()
        .stdout
        .clone();
    let summary = String::from_utf8(summary).unwrap();
    let first_id = first["run_id"].as_str().unwrap();
    assert!(
        summary.contains("| fetch  | cached    | 1        |"),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("result of run {first_id}")),
        "{summary}"
    );
    assert!(summary.contains("| stats  | succeeded |"), "{summary}");

    let listed = baton()
        .current_dir(dir.path())
        .args(["artifacts", first_id, "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let listed: Value = serde_json::from_slice(&listed).unwrap();
    let rows: Vec<(&str, &str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            (
                row["task"].as_str().unwrap(),
                row["role"].as_str().unwrap(),
                row["path"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("fetch", "produced", ".baton/work/data/squares.csv"),
            ("stats", "consumed", ".baton/work/data/squares.csv"),
        ]
    );
    assert_eq!(listed[0]["digest"], listed[1]["digest"]);

    let rerun = baton()
        .current_dir(dir.path())
        .args(["rerun", first_id, "--from", "fetch", "--json"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let rerun = lines(&rerun).pop().unwrap();
    assert_ne!(rerun["run_id"], first["run_id"]);
    assert!(
        rerun["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|task| task.get("reused_from").is_none()),
        "{rerun}"
    );
    assert_eq!(task(&rerun, "report")["status"], "succeeded");

    baton()
        .current_dir(dir.path())
        .args(["rerun", first_id, "--from", "nope"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!(
            "run `{first_id}` has no task `nope`"
        )));
}

#[test]
fn gc_deletes_finished_runs_past_the_age_with_their_logs_and_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let example = "examples/artifacts-and-cache.yaml";
    let report = lines(
        &run_in(dir.path(), &[example, "--json"])
            .success()
            .get_output()
            .stdout,
    )
    .pop()
    .unwrap();
    let run_id = report["run_id"].as_str().unwrap();
    let gc = |age: &str| -> Value {
        let output = baton()
            .current_dir(dir.path())
            .args(["gc", "--older-than", age, "--json"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&output).unwrap()
    };
    let kept = gc("30d");
    assert_eq!(kept["runs"], serde_json::json!([]));
    assert!(dir.path().join(".baton/runs").join(run_id).is_dir());

    let pruned = gc("0s");
    assert_eq!(pruned["runs"], serde_json::json!([run_id]));
    assert_eq!(pruned["objects"], 1);
    assert!(!dir.path().join(".baton/runs").join(run_id).exists());
    baton()
        .current_dir(dir.path())
        .args(["show", run_id])
        .assert()
        .code(2)
        .stderr(predicates::str::contains(format!("no run `{run_id}`")));
}

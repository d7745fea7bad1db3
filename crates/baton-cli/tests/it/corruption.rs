//! A damaged or foreign database gives clear errors, never a panic (exit
//! 101) and never a shorter history passed off as the whole: a changed
//! task index, a missing batch of events, a damaged page.

use std::process::Output;

use crate::util::baton;

/// A recorded run of three tasks in `home`; its id.
fn recorded(home: &std::path::Path) -> String {
    let spec = home.join("three.yaml");
    std::fs::write(
        &spec,
        "name: three\ntasks:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n  c: {run: 'exit 3', needs: [b]}\n",
    )
    .unwrap();
    let output = baton()
        .args(["run", "--json", "--state-dir"])
        .arg(home)
        .arg(&spec)
        .current_dir(home)
        .output()
        .unwrap();
    let text = String::from_utf8(output.stdout).unwrap();
    let report: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(report["status"], "failed", "{report}");
    report["run_id"].as_str().unwrap().to_owned()
}

fn command(home: &std::path::Path, args: &[&str]) -> Output {
    baton()
        .args(args)
        .arg("--state-dir")
        .arg(home)
        .current_dir(home)
        .output()
        .unwrap()
}

/// Every command that reads the run: none panics, none says all is well,
/// each says one of `said`.
fn every_reader_refuses(home: &std::path::Path, run: &str, said: &[&str]) {
    for args in [
        vec!["show", run],
        vec!["show", run, "--json"],
        vec!["events", run],
        vec!["verify", run],
        vec!["resume", run],
        vec!["replay", run],
    ] {
        let output = command(home, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_ne!(
            output.status.code(),
            Some(101),
            "{args:?} panicked: {stderr}"
        );
        assert!(
            !output.status.success(),
            "{args:?} said all is well: {stdout}"
        );
        assert!(
            said.iter()
                .any(|said| stderr.contains(said) || stdout.contains(said)),
            "{args:?} did not say any of {said:?}: {stdout}{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn an_event_naming_a_task_the_workflow_lacks_is_reported_as_corrupt() {
    let home = tempfile::tempdir().unwrap();
    let run = recorded(home.path());
    let database = rusqlite::Connection::open(home.path().join("baton.db")).unwrap();
    let changed = database
        .execute(
            "UPDATE event_batches SET events = replace(events, '\"task\":1,', '\"task\":4000000,')",
            [],
        )
        .unwrap();
    assert!(changed > 0);
    drop(database);
    let corrupt = format!("run `{run}` is corrupt at event");
    let replayed = "cannot follow the events before it: it names task 4000000";
    every_reader_refuses(home.path(), &run, &[&corrupt, replayed]);
}

#[test]
fn a_missing_batch_of_events_is_reported_as_corrupt_not_as_a_shorter_history() {
    let home = tempfile::tempdir().unwrap();
    let run = recorded(home.path());
    let database = rusqlite::Connection::open(home.path().join("baton.db")).unwrap();
    database
        .execute(
            "DELETE FROM event_batches WHERE first_seq =
                (SELECT min(first_seq) FROM event_batches WHERE first_seq > 0)",
            [],
        )
        .unwrap();
    drop(database);
    every_reader_refuses(home.path(), &run, &["are missing from its log"]);
}

#[test]
fn a_damaged_page_of_events_fails_verify_and_is_not_shown_as_a_history() {
    let home = tempfile::tempdir().unwrap();
    let run = recorded(home.path());
    let path = home.path().join("baton.db");
    let (page, size) = {
        let database = rusqlite::Connection::open(&path).unwrap();
        database
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
            .unwrap();
        let page: i64 = database
            .query_row(
                "SELECT rootpage FROM sqlite_master WHERE name = 'event_batches'",
                [],
                |row| row.get(0),
            )
            .unwrap();
        let size: i64 = database
            .query_row("PRAGMA page_size", [], |row| row.get(0))
            .unwrap();
        (page as u64, size as u64)
    };
    // Cells fill a page from its end: damage lands in the events.
    let mut bytes = std::fs::read(&path).unwrap();
    let start = (page * size - 600) as usize;
    for byte in &mut bytes[start..start + 512] {
        *byte = 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();

    let verify = command(home.path(), &["verify", &run]);
    assert!(!verify.status.success());
    assert_ne!(verify.status.code(), Some(101));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
    assert!(
        said.contains("damaged") || said.contains("corrupt"),
        "{said}"
    );
    for args in [vec!["show", run.as_str()], vec!["events", run.as_str()]] {
        let output = command(home.path(), &args);
        assert_ne!(output.status.code(), Some(101), "{args:?}");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            !output.status.success(),
            "{args:?} showed a damaged history as if whole: {stdout}"
        );
    }
}

#[test]
fn a_run_whose_record_is_gone_is_reported_damaged_not_unknown() {
    let home = tempfile::tempdir().unwrap();
    let run = recorded(home.path());
    rusqlite::Connection::open(home.path().join("baton.db"))
        .unwrap()
        .execute("DELETE FROM run_records", [])
        .unwrap();
    let output = command(home.path(), &["show", &run]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("its record is missing"), "{stderr}");
    assert!(!stderr.contains("no run"), "{stderr}");
}

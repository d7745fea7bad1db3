//! The machine failing under a run: the disk filling up mid-run.

use std::process::Command;

/// Whether this machine lets a test mount a small tmpfs of its own in a
/// user and mount namespace.
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c"])
        .arg("mount -t tmpfs -o size=64k none /mnt")
        .status()
        .is_ok_and(|status| status.success())
}

#[test]
fn a_full_disk_stops_the_run_clearly_and_resume_finishes_it_once_space_is_freed() {
    if !can_mount_tmpfs() {
        eprintln!("SKIPPED: cannot mount a tmpfs in a user namespace (unshare) on this machine");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("home")).unwrap();
    std::fs::write(
        dir.path().join("first.yaml"),
        "name: first\ntasks:\n  a: {run: echo a}\n  b: {needs: [a], run: echo b}\n",
    )
    .unwrap();
    // `fill` takes the disk the store lives on, once: its success cannot be
    // recorded, and its retry after the resume must not fill it again.
    std::fs::write(
        dir.path().join("fill.yaml"),
        "name: fill\ntasks:\n  fill:\n    run: \"[ -f filled ] || { touch filled; head -c 4000000 /dev/zero > home/ballast; true; }\"\n  after: {needs: [fill], run: echo after}\n",
    )
    .unwrap();
    let baton = assert_cmd::cargo::cargo_bin("baton");
    let baton = baton.display();
    let script = format!(
        "mount -t tmpfs -o size=3m none home || exit 99
        {baton} run --state-dir home --run-id first first.yaml > /dev/null || exit 98
        echo '== full'
        {baton} run --state-dir home --run-id filled fill.yaml
        echo \"== exit $?\"
        rm home/ballast
        {baton} verify --state-dir home first
        {baton} resume --state-dir home filled --json | tail -1
        echo \"== exit $?\"
        {baton} verify --state-dir home filled"
    );
    let output = Command::new("unshare")
        .args(["--user", "--map-root-user", "--mount", "sh", "-c", &script])
        .current_dir(dir.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let full_run = stdout.split("== full").nth(1).unwrap();
    assert!(full_run.contains("== exit 2"), "{stdout}");
    assert!(
        stderr.contains("run filled stopped: its record could not be written")
            && stderr.contains("the disk is full")
            && stderr.contains("`baton resume filled`"),
        "{stderr}"
    );
    // What was recorded before is whole.
    assert!(
        stdout.contains("ok: ") && stdout.contains("2 provenance record(s) match"),
        "{stdout}"
    );
    let resumed = stdout.split("== exit 2").nth(1).unwrap();
    let report: serde_json::Value = serde_json::from_str(
        resumed
            .lines()
            .find(|line| line.starts_with('{'))
            .expect("the resumed run's report"),
    )
    .unwrap();
    assert_eq!(report["status"], "succeeded", "{report}");
    assert!(resumed.contains("== exit 0"), "{stdout}");
    assert!(
        resumed.contains("ok: ") && resumed.contains("2 provenance record(s) match"),
        "{stdout}"
    );
}

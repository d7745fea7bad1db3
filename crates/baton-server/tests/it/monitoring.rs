//! What operators are given to watch baton with: the Prometheus alert
//! rules in `deploy/prometheus/` (valid and passing their unit tests under
//! `promtool`) and the Grafana dashboard in `deploy/grafana/`, both
//! querying only metrics a live server exports.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::util::{app, follow, get, send, start, text};

fn rules_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/prometheus")
}

/// `promtool` with `args` in the rules' directory; none (said loudly)
/// without it.
fn promtool(args: &[&str]) -> Option<std::process::Output> {
    match Command::new("promtool")
        .args(args)
        .current_dir(rules_dir())
        .output()
    {
        Ok(output) => Some(output),
        Err(_) => {
            eprintln!(
                "SKIPPED: promtool is not installed (`.ci/run` installs Debian's prometheus)"
            );
            None
        }
    }
}

#[test]
fn the_alert_rules_are_valid_and_pass_their_unit_tests() {
    for args in [
        &["check", "rules", "alerts.yaml"][..],
        &["test", "rules", "alerts.test.yaml"][..],
    ] {
        let Some(output) = promtool(args) else {
            return;
        };
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn the_prometheus_config_of_the_compose_set_up_is_valid() {
    // promtool checks that the key file exists: the container's path is
    // pointed at a file of this test's.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("metrics-key");
    std::fs::write(&key, "baton_read_key").unwrap();
    let config = std::fs::read_to_string(rules_dir().join("prometheus.yml"))
        .unwrap()
        .replace("/etc/prometheus/metrics-key", key.to_str().unwrap());
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    std::fs::copy(
        rules_dir().join("alerts.yaml"),
        dir.path().join("alerts.yaml"),
    )
    .unwrap();
    let checked = match Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(dir.path())
        .output()
    {
        Ok(output) => output,
        Err(_) => {
            eprintln!(
                "SKIPPED: promtool is not installed (`.ci/run` installs Debian's prometheus)"
            );
            return;
        }
    };
    assert!(
        checked.status.success(),
        "promtool check config:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
}

/// Every `baton_*` name `text` mentions, without a histogram's suffix.
fn metric_names(text: &str) -> Vec<String> {
    let mut names: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|word| word.starts_with("baton_"))
        .map(|word| word.trim_end_matches("_bucket").to_owned())
        .collect();
    names.sort();
    names.dedup();
    names
}

/// The queries of the Grafana dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let path = rules_dir().join("../grafana/baton.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 12, "a panel for each thing the issue names");
    panels
        .iter()
        .flat_map(|panel| {
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{} queries nothing", panel["title"]);
            targets
                .iter()
                .map(|target| target["expr"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every metric the alert rules and the dashboard query.
fn queried() -> Vec<String> {
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yaml")).unwrap();
    let mut names = metric_names(&rules);
    names.extend(metric_names(&dashboard_queries().join("\n")));
    names.sort();
    names.dedup();
    names
}

#[tokio::test]
async fn every_metric_the_alert_rules_and_the_dashboard_query_is_one_a_live_server_exports() {
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    // A run, so appends, queue waits and finished runs are recorded.
    let run = start(
        &app,
        "name: scraped\ntasks:\n  a: {run: 'true'}\n  b: {run: 'true', needs: [a]}\n",
    )
    .await;
    follow(&app, &run).await;

    // A breaker's gauge exists once a breaker has moved; the rest at once
    // (the worker queue's gauges after the dispatcher's first tick).
    let appear_later = ["baton_breaker_open"];
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let scraped = text(send(&app, get("/metrics")).await).await;
        let missing: Vec<String> = queried()
            .into_iter()
            .filter(|name| !appear_later.contains(&name.as_str()))
            .filter(|name| {
                !scraped
                    .lines()
                    .any(|line| line.starts_with(name.as_str()) && !line.starts_with('#'))
            })
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the rules or the dashboard query metrics the server does not export: {missing:?}\n{scraped}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn every_alert_names_a_runbook_that_exists() {
    let rules = std::fs::read_to_string(rules_dir().join("alerts.yaml")).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("- alert: "))
        .collect();
    let runbooks: Vec<&str> = rules
        .lines()
        .filter_map(|line| line.trim().strip_prefix("runbook: "))
        .collect();
    assert_eq!(alerts.len(), 11, "{alerts:?}");
    assert_eq!(alerts.len(), runbooks.len());
    for (alert, runbook) in alerts.iter().zip(&runbooks) {
        assert_eq!(*runbook, format!("docs/runbooks/{alert}.md"));
        let text = std::fs::read_to_string(root.join(runbook)).unwrap();
        for part in ["**Means:**", "**Confirm:**", "**Do:**"] {
            assert!(text.contains(part), "{runbook} lacks {part}");
        }
    }
}

//! `cargo bench -p baton-cli --bench dashboard`: how long the dashboard
//! takes to draw a 10,000-task run in headless Chromium. A release
//! `baton serve` runs 10,000 no-op tasks in ten chains; the page is then
//! opened, five times, and the figures are the times from navigation to
//! the frame after the one that first painted the whole graph (the page's
//! own `baton-dag-painted` mark), to a poll from outside finding every
//! task drawn in its final colour, and to the timeline drawn. Needs `chromium` and `chromium-driver` (Debian).

use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::Locator;
use serde_json::{Value, json};

#[path = "../tests/it/chromium.rs"]
mod chromium;

const TASKS: usize = 10_000;
const CHAINS: usize = 10;

fn baton() -> Command {
    let release = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/baton");
    assert!(
        release.exists(),
        "build the release binary first: cargo build --release"
    );
    Command::new(release)
}

#[tokio::main]
async fn main() {
    let Some(chromedriver) = chromium::chromedriver() else {
        eprintln!(
            "dashboard: chromedriver is not installed (apt-get install chromium chromium-driver)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let key = String::from_utf8(
        baton()
            .current_dir(dir.path())
            .args(["keys", "create", "--name", "bench", "--scope", "execute"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    // A long history: 100,000 finished runs besides the one measured.
    let store = rusqlite::Connection::open(dir.path().join(".baton/baton.db")).unwrap();
    store
        .execute_batch(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 100000)
             INSERT INTO runs (run_id, next_seq, workflow, status, started_at, finished_at)
             SELECT printf('r%06d', i), 3, CASE WHEN i % 10 = 0 THEN 'nightly' ELSE 'x' END,
                    CASE WHEN i % 100 = 0 THEN 'failed' ELSE 'succeeded' END,
                    1796000000000 + i*1000, 1796000000000 + i*1000 + 50 FROM n;",
        )
        .unwrap();
    drop(store);
    let mut server = baton()
        .current_dir(dir.path())
        .args(["serve", "--bind", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(server.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    let address = line.split("http://").nth(1).unwrap().trim().to_owned();

    let mut tasks = serde_json::Map::new();
    for index in 0..TASKS {
        let mut task = json!({"noop": true});
        if index >= CHAINS {
            task["needs"] = json!([format!("t{}", index - CHAINS)]);
        }
        tasks.insert(format!("t{index}"), task);
    }
    let spec = json!({"name": "wide", "tasks": tasks}).to_string();
    let http = baton_engine::http_client().build().unwrap();
    let started: Value = http
        .post(format!("http://{address}/api/v1/runs"))
        .bearer_auth(&key)
        .json(&json!({ "spec": spec }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = started["run_id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let shown: Value = http
            .get(format!("http://{address}/api/v1/runs/{run}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown["status"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "the run did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let (mut driver, client) = chromium::open(chromedriver).await;
    // Sign in once; the key stays in the tab for the page loads below.
    client.goto(&format!("http://{address}/")).await.unwrap();
    client
        .wait()
        .for_element(Locator::Css("#key"))
        .await
        .unwrap()
        .send_keys(&key)
        .await
        .unwrap();
    client
        .find(Locator::Css("#sign-in-form button"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    client
        .wait()
        .for_element(Locator::Css("table.runs"))
        .await
        .unwrap();

    let mut painted = Vec::new();
    let mut drawn = Vec::new();
    let mut timeline = Vec::new();
    for _ in 0..5 {
        client.goto("about:blank").await.unwrap();
        client
            .goto(&format!("http://{address}/#/runs/{run}"))
            .await
            .unwrap();
        let (mut all, mut bars) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(60);
        while all.is_none() || bars.is_none() {
            let found = client
                .execute(
                    "return [document.querySelectorAll('svg.dag .node[data-status=\"succeeded\"]').length,
                             document.querySelectorAll('svg.gantt rect').length,
                             performance.now()];",
                    vec![],
                )
                .await
                .unwrap();
            let (nodes, rects, now) = (
                found[0].as_u64().unwrap_or_default(),
                found[1].as_u64().unwrap_or_default(),
                found[2].as_f64().unwrap_or_default(),
            );
            if all.is_none() && nodes as usize == TASKS {
                all = Some(now);
            }
            if bars.is_none() && rects >= 2000 {
                bars = Some(now);
            }
            assert!(Instant::now() < deadline, "the page never drew it all");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mark = client
            .execute(
                "return performance.getEntriesByName('baton-dag-painted')[0].startTime;",
                vec![],
            )
            .await
            .unwrap();
        painted.push(mark.as_f64().unwrap());
        drawn.push(all.unwrap());
        timeline.push(bars.unwrap());
    }
    let mut listed = Vec::new();
    for page in ["#/runs", "#/runs?status=failed", "#/runs?workflow=nightly"] {
        let mut times = Vec::new();
        for _ in 0..5 {
            client.goto("about:blank").await.unwrap();
            client
                .goto(&format!("http://{address}/{page}"))
                .await
                .unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let mark = client
                    .execute(
                        "const mark = performance.getEntriesByName('baton-runs-listed')[0]; return mark ? mark.startTime : null;",
                        vec![],
                    )
                    .await
                    .unwrap();
                if let Some(at) = mark.as_f64() {
                    times.push(at);
                    break;
                }
                assert!(Instant::now() < deadline, "{page} never listed its runs");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        times.sort_by(f64::total_cmp);
        listed.push((page, times[2]));
    }
    for (page, at) in listed {
        println!(
            "dashboard: {page} over 100,001 recorded runs: its first 50 listed after {at:.0} ms (median of 5)"
        );
    }
    for figures in [&mut painted, &mut drawn, &mut timeline] {
        figures.sort_by(f64::total_cmp);
    }
    println!(
        "dashboard: a {TASKS}-task run's page, medians of 5: the whole graph painted after {:.0} ms (min {:.0}, max {:.0}); every task found in its colour from outside after {:.0} ms; the timeline drawn after {:.0} ms",
        painted[2], painted[0], painted[4], drawn[2], timeline[2]
    );
    let _ = client.close().await;
    for child in [&mut driver, &mut server] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

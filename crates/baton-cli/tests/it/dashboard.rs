//! The dashboard in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver), against `baton serve` as a user
//! starts it. Screenshots of the run page are kept under the test
//! target's temporary directory (`dashboard-*.png`).

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use serde_json::{Value, json};

use crate::util::{key, request, serve};

/// A chromedriver of its own and a browser session on it.
struct Browser {
    driver: Child,
    client: Client,
}

impl Browser {
    /// A headless Chromium at 1280×800; none (said loudly) without
    /// chromedriver (`.ci/run` installs Debian's `chromium-driver`).
    async fn start() -> Option<Browser> {
        let Some(chromedriver) = crate::chromium::chromedriver() else {
            eprintln!(
                "SKIPPED: chromedriver is not installed (`.ci/run` installs chromium-driver)"
            );
            return None;
        };
        let (driver, client) = crate::chromium::open(chromedriver).await;
        Some(Browser { driver, client })
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }

    /// Waits (up to 30 s) for an element matching `css`.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|error| panic!("no `{css}` on the page: {error}"))
    }

    /// How many elements match `css` now.
    async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|found| found.len())
            .unwrap_or_default()
    }

    /// Clicks what matches `css`, finding it again if the page redrew it
    /// between finding and clicking (up to 30 s).
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.find(css).await.click().await {
                Ok(()) => return,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("clicking `{css}` again: {error}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(error) => panic!("cannot click `{css}`: {error}"),
            }
        }
    }

    /// Waits (up to 30 s) until the text of what matches `css` holds
    /// `wanted`, finding it again each time.
    async fn text_holds(&self, css: &str, wanted: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text: String = self.find(css).await.text().await.unwrap_or_default();
            if text.contains(wanted) {
                return;
            }
            assert!(Instant::now() < deadline, "`{css}` says: {text}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn sign_in(&self, key: &str) {
        self.find("#key").await.send_keys(key).await.unwrap();
        self.click("#sign-in-form button[type=submit]").await;
    }

    async fn screenshot(&self, name: &str) -> PathBuf {
        let png = self.client.screenshot().await.unwrap();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("dashboard-{name}.png"));
        std::fs::write(&path, png).unwrap();
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
    }
}

/// Starts `spec` (YAML or JSON text) on the server; its run id.
fn start(address: &str, key: &str, spec: &str) -> String {
    let (status, body) = request(
        address,
        key,
        ("POST", "/api/v1/runs"),
        Some(&json!({ "spec": spec })),
    );
    assert_eq!(status, 201, "{body}");
    let started: Value = serde_json::from_str(&body).unwrap();
    started["run_id"].as_str().unwrap().to_owned()
}

fn approval_spec() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/approval.yaml");
    std::fs::read_to_string(path).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_watched_and_approved_from_its_page_and_a_read_only_key_sees_no_buttons() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runner = key(dir.path(), "execute");
    let reader = key(dir.path(), "read");
    let (_server, address) = serve(dir.path(), &[], &[]);
    let run = start(&address, &runner, &approval_spec());

    browser
        .client
        .goto(&format!("http://{address}/#/runs/{run}"))
        .await
        .unwrap();
    browser.sign_in(&runner).await;
    // The DAG is drawn, and the approval task turns `waiting` live.
    browser
        .find(r#"svg.dag .node[data-task="approve"][data-status="waiting"]"#)
        .await;
    browser
        .find(r#"svg.dag .node[data-task="build"][data-status="succeeded"]"#)
        .await;
    let shot = browser.screenshot("waiting").await;
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a picture"
    );

    browser.click(r#"svg.dag .node[data-task="approve"]"#).await;
    browser
        .find("#comment")
        .await
        .send_keys("release notes checked")
        .await
        .unwrap();
    browser.click(r#"button[data-choice="ship"]"#).await;
    browser.find(".run-head .status.succeeded").await;
    browser
        .find(r#"svg.dag .node[data-task="ship"][data-status="succeeded"]"#)
        .await;
    browser
        .find(r#"svg.dag .node[data-task="hold"][data-status="skipped"]"#)
        .await;
    browser.screenshot("approved").await;
    // Its timeline has a bar per attempt, and its record verifies.
    browser.find("svg.gantt rect.succeeded").await;
    browser.click(r#"button[data-action="verify"]"#).await;
    browser.find(".verify .status.succeeded").await;
    let (_, shown) = request(
        &address,
        &runner,
        ("GET", &format!("/api/v1/runs/{run}")),
        None,
    );
    assert!(shown.contains("release notes checked"), "{shown}");

    // A read-only key sees the same run and no button that would act.
    let waiting = start(&address, &runner, &approval_spec());
    browser.click("#sign-out").await;
    browser
        .client
        .goto(&format!("http://{address}/#/runs/{waiting}"))
        .await
        .unwrap();
    browser.sign_in(&reader).await;
    browser
        .click(r#"svg.dag .node[data-task="approve"][data-status="waiting"]"#)
        .await;
    browser.find(".panel h2").await;
    assert_eq!(browser.count("button[data-action]").await, 0);
    assert_eq!(browser.count("button[data-choice]").await, 0);

    // The runs list: the finished run, and the waiting one's progress.
    browser
        .client
        .goto(&format!("http://{address}/#/runs"))
        .await
        .unwrap();
    browser
        .find(r#"table.runs progress[aria-label="1 of 4 tasks"]"#)
        .await;
    browser
        .find(&format!(
            r#"table.runs a[href="{}"]"#,
            format_args!("#/runs/{run}")
        ))
        .await;
    browser.screenshot("runs").await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_is_cancelled_from_its_page_and_a_failed_one_rerun_from_its_failed_task() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let runner = key(dir.path(), "execute");
    let (_server, address) = serve(dir.path(), &[], &[]);
    let long = start(
        &address,
        &runner,
        "name: long\ntasks:\n  wait: {run: 'echo started; sleep 60'}\n",
    );
    browser
        .client
        .goto(&format!("http://{address}/#/runs/{long}/wait"))
        .await
        .unwrap();
    browser.sign_in(&runner).await;
    browser
        .find(r#"svg.dag .node[data-task="wait"][data-status="running"]"#)
        .await;
    // The running task's log streams into its panel as it is written.
    browser.text_holds(".panel pre.logs", "started").await;
    browser.click(r#"button[data-action="cancel"]"#).await;
    browser.client.accept_alert().await.unwrap();
    browser.find(".run-head .status.cancelled").await;

    // A task that fails until a file exists; the file is made, and the run
    // is rerun from the failed task, from the page.
    let flag = dir.path().join("fixed");
    let spec = format!(
        "name: flaky\ntasks:\n  first: {{run: 'true'}}\n  check: {{needs: [first], run: 'test -e {}'}}\n",
        flag.display()
    );
    let failed = start(&address, &runner, &spec);
    browser
        .client
        .goto(&format!("http://{address}/#/runs/{failed}/check"))
        .await
        .unwrap();
    browser.find(".run-head .status.failed").await;
    std::fs::write(&flag, "").unwrap();
    browser.click(r#"button[data-action="rerun"]"#).await;
    browser.find(".run-head .status.succeeded").await;
    let url = browser.client.current_url().await.unwrap();
    assert!(!url.as_str().contains(&failed), "a new run: {url}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registered_workflow_is_started_from_a_form_built_from_its_inputs() {
    let Some(browser) = Browser::start().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let admin = key(dir.path(), "admin");
    let (_server, address) = serve(dir.path(), &[], &[]);
    let spec = json!({
        "name": "greet",
        "inputs": {
            "who": {"type": "string"},
            "times": {"type": "integer", "default": 2},
            "loud": {"type": "boolean", "default": false},
        },
        "tasks": {"hello": {"run": "echo \"{{ inputs.who }} {{ inputs.times }} {{ inputs.loud }}\""}},
    });
    let (status, body) = request(&address, &admin, ("POST", "/api/v1/workflows"), Some(&spec));
    assert_eq!(status, 201, "{body}");
    browser
        .client
        .goto(&format!("http://{address}/#/workflows"))
        .await
        .unwrap();
    browser.sign_in(&admin).await;
    browser.click(r##"a[href="#/workflows/greet"]"##).await;
    browser.find("svg.dag .node[data-task=\"hello\"]").await;
    browser.text_holds("dl.plan", "levels").await;
    browser
        .find("#input-who")
        .await
        .send_keys("ada")
        .await
        .unwrap();
    browser.click("#input-loud").await;
    browser.click("form.start button[type=submit]").await;
    browser.find(".run-head .status.succeeded").await;
    browser.click(r#"svg.dag .node[data-task="hello"]"#).await;
    browser.text_holds(".panel pre.logs", "ada 2 true").await;
    browser.screenshot("started").await;

    // At a phone's width nothing runs off the side of the page.
    browser.client.set_window_size(390, 844).await.unwrap();
    for page in ["#/runs", "#/workflows/greet"] {
        browser
            .client
            .goto(&format!("http://{address}/{page}"))
            .await
            .unwrap();
        browser.find("h1").await;
        let overflow = browser
            .client
            .execute(
                "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{page} is wider than the phone by {overflow}"
        );
    }
    browser.screenshot("phone").await;

    browser
        .client
        .goto(&format!("http://{address}/#/agents"))
        .await
        .unwrap();
    browser.find("h1").await;
    browser.close().await;
}

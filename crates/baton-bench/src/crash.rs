//! `baton bench crash --trials N`: the crash matrix. Each trial runs a
//! workflow that uses foreach, a sub-workflow, spawned tasks, an approval
//! decided by its timeout, a cached task and artifacts handed downstream,
//! and SIGKILLs `baton run` (then each `baton resume`) at random points
//! until a resume finishes it. Side effects are files outside baton's
//! record (`effects/NAME.ATTEMPT`), so a repeat is seen whatever baton
//! says. After each trial: every run (child runs too) succeeded; no task
//! started again after it succeeded, and no side effect of a later attempt
//! exists for a task that had succeeded; every run's provenance verifies
//! (`baton verify`: its event sequence is whole). The figures: trials,
//! kills, repeats found, runs that fail verification, and the time from a
//! `baton resume` starting to the run's first new event.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use baton_core::SplitMix64;
use baton_core::run::Event;
use baton_store::{ReadModels, RunFilter, RunLog, SqliteStore};

use crate::figures::{quantile, show};

const SPEC: &str = r#"
name: matrix
concurrency: 3
tasks:
  items:
    foreach: {items: "{{ range(6) | list }}", concurrency: 2}
    run: sleep 0.05; touch "effects/item-$ITEM.$BATON_ATTEMPT"
    env: {ITEM: "{{ item }}"}
  child:
    workflow:
      inline:
        name: child
        tasks:
          c1: {run: 'sleep 0.05; touch "effects/$BATON_TASK_ID.$BATON_ATTEMPT"'}
          c2: {needs: [c1], run: 'sleep 0.05; touch "effects/$BATON_TASK_ID.$BATON_ATTEMPT"'}
  spawner:
    run: |
      sleep 0.05; touch "effects/spawner.$BATON_ATTEMPT"
      cat > "$BATON_OUTPUT" <<'JSON'
      {"spawn": [
        {"id": "s1", "run": "sleep 0.05; touch effects/s1.$BATON_ATTEMPT"},
        {"id": "s2", "needs": ["s1"], "run": "sleep 0.05; touch effects/s2.$BATON_ATTEMPT"}
      ]}
      JSON
  gate:
    needs: [items]
    approval: {prompt: go?, choices: [go, stop], timeout: 200ms, default: go}
  cached:
    needs: [gate]
    cache: {key: "matrix-cached"}
    run: |
      sleep 0.05; touch "effects/cached.$BATON_ATTEMPT"; echo '{"n": 1}' > "$BATON_OUTPUT"
  producer:
    run: sleep 0.05; echo made > made.txt; touch "effects/producer.$BATON_ATTEMPT"
    artifacts: [made.txt]
  consumer:
    needs: [producer, cached, child, spawner]
    run: test -f made.txt && sleep 0.05 && touch "effects/consumer.$BATON_ATTEMPT"
"#;

/// What the trials found.
#[derive(Default)]
struct Found {
    kills: usize,
    /// A task that started again after it succeeded, or the side effect of
    /// an attempt after the one that succeeded.
    repeats: Vec<String>,
    /// Runs that did not end succeeded, or whose provenance failed `baton
    /// verify`.
    broken: Vec<String>,
    /// From a resume's start to the run's first new event.
    resumes: Vec<Duration>,
}

pub(crate) async fn crash(trials: usize, seed: u64) -> anyhow::Result<()> {
    let baton = std::env::current_exe().context("where this binary is")?;
    if let Err(problems) = baton_core::check_source(SPEC, baton_core::Format::Yaml) {
        anyhow::bail!("the matrix's workflow is invalid: {problems:?}");
    }
    // The same seed kills at the same times.
    let mut random = SplitMix64(seed);
    let mut found = Found::default();
    let started = Instant::now();
    for trial in 0..trials {
        let dir = tempfile::tempdir()?;
        std::fs::write(dir.path().join("matrix.yaml"), SPEC)?;
        std::fs::create_dir(dir.path().join("effects"))?;
        trial_once(&baton, dir.path(), &mut random, &mut found)
            .await
            .with_context(|| format!("trial {trial}"))?;
    }
    let mut resumes = found.resumes.clone();
    resumes.sort();
    println!(
        "crash matrix: {trials} trials in {}, {} kills (SIGKILL of `baton run` and `baton resume` at random points)",
        show(started.elapsed()),
        found.kills
    );
    println!(
        "repeats found: {} (a finished task's side effect or start again)",
        found.repeats.len()
    );
    println!(
        "runs not succeeded or failing `baton verify`: {}",
        found.broken.len()
    );
    if !resumes.is_empty() {
        println!(
            "resume to first new event: median {}, p99 {}, max {} over {} resumes",
            show(quantile(&resumes, 0.5)),
            show(quantile(&resumes, 0.99)),
            show(quantile(&resumes, 1.0)),
            resumes.len()
        );
    }
    for problem in found.repeats.iter().chain(&found.broken).take(20) {
        println!("  {problem}");
    }
    anyhow::ensure!(
        found.repeats.is_empty() && found.broken.is_empty(),
        "the crash matrix found repeats or broken runs"
    );
    Ok(())
}

fn baton_in(baton: &Path, dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(baton);
    command
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// The store the trial's `baton`s record into, once its first run made it.
fn store_of(dir: &Path) -> Option<SqliteStore> {
    let path = dir.join(".baton/baton.db");
    path.exists()
        .then(|| SqliteStore::open(path).ok())
        .flatten()
}

/// Every run of `store`, parents and children.
async fn runs(store: &SqliteStore) -> Vec<baton_store::RunSummary> {
    let all = RunFilter {
        limit: usize::MAX,
        ..RunFilter::default()
    };
    store.runs(&all).await.unwrap_or_default()
}

/// Events `store` holds for `run`.
async fn event_count(store: &SqliteStore, run: &str) -> u64 {
    store.summary(run).await.map_or(0, |summary| summary.events)
}

async fn trial_once(
    baton: &Path,
    dir: &Path,
    random: &mut SplitMix64,
    found: &mut Found,
) -> anyhow::Result<()> {
    // The first kill lands somewhere in the run, or before it is recorded.
    let mut parent = None;
    for _ in 0..50 {
        if parent.is_some() {
            break;
        }
        let mut child = baton_in(baton, dir, &["run", "matrix.yaml"]).spawn()?;
        tokio::time::sleep(Duration::from_millis(30 + random.below(400))).await;
        if child.try_wait()?.is_none() {
            child.kill()?;
            found.kills += 1;
        }
        child.wait()?;
        if let Some(store) = store_of(dir) {
            parent = runs(&store)
                .await
                .into_iter()
                .find(|run| run.workflow == "matrix")
                .map(|run| (run.run_id, store));
        }
    }
    let (parent, store) = parent.context("`baton run` never recorded its run")?;
    // Resumes, each killed at a random point half the time, until one ends.
    loop {
        let before = event_count(&store, &parent).await;
        let begun = Instant::now();
        let mut child = baton_in(baton, dir, &["resume", &parent]).spawn()?;
        let mut progressed = false;
        let kill_at = (random.below(2) == 0).then(|| Duration::from_millis(20 + random.below(300)));
        let ended = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if !progressed && event_count(&store, &parent).await > before {
                progressed = true;
                found.resumes.push(begun.elapsed());
            }
            if kill_at.is_some_and(|at| begun.elapsed() >= at) {
                child.kill()?;
                child.wait()?;
                found.kills += 1;
                break None;
            }
            anyhow::ensure!(
                begun.elapsed() < Duration::from_secs(120),
                "a resume of {parent} ran for two minutes"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        if let Some(status) = ended {
            anyhow::ensure!(status.success(), "`baton resume {parent}` failed: {status}");
            break;
        }
    }
    check(baton, dir, &store, found).await
}

/// Checks every run of the trial in `dir`, recorded in `store`.
async fn check(
    baton: &Path,
    dir: &Path,
    store: &SqliteStore,
    found: &mut Found,
) -> anyhow::Result<()> {
    let effect = |name: &str| dir.join("effects").join(name).exists();
    for run in runs(store).await {
        if run.status != baton_core::run::RunStatus::Succeeded {
            found
                .broken
                .push(format!("{} ended {}", run.run_id, run.status.name()));
        }
        let verified = baton_in(baton, dir, &["verify", &run.run_id]).status()?;
        if !verified.success() {
            found
                .broken
                .push(format!("{} fails `baton verify`", run.run_id));
        }
        let events = store.events(&run.run_id).await?;
        let record = store.run(&run.run_id).await?;
        let names: Vec<String> = record
            .workflow
            .tasks
            .iter()
            .map(|task| task.id.to_string())
            .collect();
        let mut succeeded: std::collections::BTreeMap<u32, u32> = Default::default();
        for event in &events {
            match *event {
                Event::TaskStarted { task, .. } if succeeded.contains_key(&task) => {
                    found.repeats.push(format!(
                        "{}: task {task} started again after it succeeded",
                        run.run_id
                    ));
                }
                Event::TaskSucceeded { task, attempt, .. } => {
                    succeeded.insert(task, attempt);
                }
                _ => {}
            }
        }
        for (task, attempt) in succeeded {
            let Some(name) = names.get(task as usize) else {
                continue;
            };
            for later in attempt + 1..attempt + 4 {
                if effect(&format!("{name}.{later}")) {
                    found.repeats.push(format!(
                        "{}: {name} ran attempt {later} after attempt {attempt} succeeded",
                        run.run_id
                    ));
                }
            }
        }
    }
    Ok(())
}

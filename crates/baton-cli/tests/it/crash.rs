//! Crash safety: SIGKILL `baton` at random points of a run, resume it each
//! time, and check the record: every task succeeded exactly once, and no
//! task that had succeeded ever started again.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use baton_core::run::{Event, RunStatus};
use baton_store::{PostgresStore, ReadModels, RunFilter, RunLog, SqliteStore, Store};

use crate::util::{alive, block};

/// The newest run.
const LATEST: RunFilter = RunFilter {
    status: None,
    workflow: None,
    finished_before: None,
    started_after: None,
    started_before: None,
    orphaned_at: None,
    unfinished: false,
    after: None,
    limit: 1,
};

/// A small deterministic generator, so a failure replays with the same kills.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1);
        (self.0 >> 33) % bound
    }
}

fn baton(dir: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("baton"));
    command
        .current_dir(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Starts `command`, SIGKILLs it after `after` unless it ended; whether it
/// was killed.
fn kill_after(mut command: Command, after: Duration) -> bool {
    let mut child = command.spawn().unwrap();
    std::thread::sleep(after);
    let killed = child.try_wait().unwrap().is_none();
    if killed {
        child.kill().unwrap();
    }
    child.wait().unwrap();
    killed
}

/// Where a crash test's runs are recorded, opened afresh for each look (a
/// PostgreSQL store lives on the runtime that connected it).
enum Place {
    Sqlite(std::path::PathBuf),
    Postgres(String),
}

impl Place {
    async fn open(&self) -> Option<Box<dyn Store>> {
        Some(match self {
            Place::Sqlite(path) => Box::new(SqliteStore::open(path).ok()?),
            Place::Postgres(url) => Box::new(PostgresStore::connect(url).await.ok()?),
        })
    }

    fn latest(&self) -> Option<baton_store::RunSummary> {
        block(async {
            self.open()
                .await?
                .runs(&LATEST)
                .await
                .ok()?
                .into_iter()
                .next()
        })
    }

    fn events(&self, run: &str) -> Vec<Event> {
        block(async {
            self.open()
                .await
                .expect("the store opens")
                .events(run)
                .await
        })
        .expect("the run's events")
    }
}

#[test]
fn a_run_killed_at_random_points_resumes_without_repeating_finished_work() {
    let dir = tempfile::tempdir().unwrap();
    let place = Place::Sqlite(dir.path().join(".baton/baton.db"));
    killed_at_random_points(dir.path(), &place, &[]);
}

#[test]
fn a_run_recorded_in_postgres_killed_at_random_points_resumes_without_repeating_finished_work() {
    let Some(schema) = crate::util::PgSchema::new() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let url = schema.url();
    killed_at_random_points(
        dir.path(),
        &Place::Postgres(url.clone()),
        &["--store", &url],
    );
}

/// Kills `baton run`, then `baton resume`, at random points, 20 times, and
/// checks the record the store at `place` keeps; `store` are the flags
/// that point baton at it.
fn killed_at_random_points(dir: &Path, place: &Place, store: &[&str]) {
    let mut spec = String::from("name: crashy\nconcurrency: 2\ntasks:\n");
    for task in 0..50 {
        let needs = if task >= 10 {
            let level = (task / 10 - 1) * 10;
            format!("[t{:02}, t{:02}]", task - 10, level + (task % 10 + 3) % 10)
        } else {
            "[]".to_owned()
        };
        spec.push_str(&format!(
            "  t{task:02}:\n    needs: {needs}\n    run: sleep 0.15; touch \"effects/$BATON_TASK_ID.$BATON_ATTEMPT\"\n"
        ));
    }
    std::fs::write(dir.join("crashy.yaml"), spec).unwrap();
    std::fs::create_dir(dir.join("effects")).unwrap();

    let mut random = Lcg(7);
    let mut kills = 0;
    let run_id = loop {
        let after = Duration::from_millis(40 + random.below(200));
        assert!(
            kill_after(
                baton(dir, &[&["run", "crashy.yaml"], store].concat()),
                after
            ),
            "`baton run` ended on its own: is the spec valid?"
        );
        kills += 1;
        if let Some(run) = place.latest() {
            break run.run_id;
        }
    };
    while kills < 20 {
        let after = Duration::from_millis(5 + random.below(250));
        if kill_after(
            baton(dir, &[&["resume", run_id.as_str()], store].concat()),
            after,
        ) {
            kills += 1;
        } else {
            break;
        }
    }
    assert!(
        kills >= 20,
        "the run finished after {kills} kills; make it longer"
    );
    let status = baton(dir, &[&["resume", run_id.as_str()], store].concat())
        .status()
        .unwrap();
    assert!(status.success(), "the final resume failed: {status}");

    assert_eq!(place.latest().unwrap().status, RunStatus::Succeeded);
    let events = place.events(&run_id);
    let mut succeeded = [None::<u32>; 50];
    let mut lost = 0;
    for event in &events {
        match *event {
            Event::TaskStarted { task, .. } => assert!(
                succeeded[task as usize].is_none(),
                "t{task:02} started again after it had succeeded"
            ),
            Event::TaskSucceeded { task, attempt, .. } => {
                assert_eq!(succeeded[task as usize], None, "t{task:02} succeeded twice");
                succeeded[task as usize] = Some(attempt);
            }
            Event::AttemptLost { .. } => lost += 1,
            _ => {}
        }
    }
    assert!(lost > 0, "no kill caught an attempt in flight");
    for (task, attempt) in succeeded.iter().enumerate() {
        let attempt = attempt.unwrap_or_else(|| panic!("t{task:02} never succeeded"));
        assert!(
            dir.join(format!("effects/t{task:02}.{attempt}")).exists(),
            "t{task:02} succeeded without its side effect"
        );
        assert!(
            !dir.join(format!("effects/t{task:02}.{}", attempt + 1))
                .exists(),
            "t{task:02} ran again after it succeeded"
        );
    }
}

#[test]
fn resume_stops_what_the_dead_baton_left_running_before_running_it_again() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("orphan.yaml"),
        "name: orphan\ntasks:\n  long:\n    run: |\n      if [ \"$BATON_ATTEMPT\" = 1 ]; then sleep 300 & echo $! > first.pid; wait; fi\n",
    )
    .unwrap();
    let mut run = baton(dir.path(), &["run", "orphan.yaml"]).spawn().unwrap();
    let first = loop {
        if let Some(pid) = std::fs::read_to_string(dir.path().join("first.pid"))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        {
            break pid;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    run.kill().unwrap();
    run.wait().unwrap();
    assert!(alive(first), "the orphan should outlive a SIGKILLed baton");

    let store = SqliteStore::open(dir.path().join(".baton/baton.db")).unwrap();
    let run_id = block(store.runs(&LATEST)).unwrap()[0].run_id.clone();
    drop(store);
    let status = baton(dir.path(), &["resume", &run_id]).status().unwrap();
    assert!(status.success());
    assert!(!alive(first), "resume left the first attempt running");
    let store = SqliteStore::open(dir.path().join(".baton/baton.db")).unwrap();
    assert_eq!(
        block(store.runs(&LATEST)).unwrap()[0].status,
        RunStatus::Succeeded
    );
}

/// Every run recorded in `store`, parents and children.
fn all_runs(store: &SqliteStore) -> Vec<baton_store::RunSummary> {
    block(store.runs(&RunFilter {
        limit: 1000,
        ..LATEST
    }))
    .unwrap()
}

const PATTERNS: &str = r#"
name: patterns
concurrency: 3
tasks:
  items:
    foreach: {items: "{{ range(12) | list }}", concurrency: 2}
    run: sleep 0.1; touch "effects/item-$ITEM.$BATON_ATTEMPT"
    env: {ITEM: "{{ item }}"}
  child:
    workflow:
      inline:
        name: child
        tasks:
          c1: {run: 'sleep 0.1; touch "effects/$BATON_TASK_ID.$BATON_ATTEMPT"'}
          c2: {needs: [c1], run: 'sleep 0.1; touch "effects/$BATON_TASK_ID.$BATON_ATTEMPT"'}
          c3: {needs: [c2], run: 'sleep 0.1; touch "effects/$BATON_TASK_ID.$BATON_ATTEMPT"'}
          c4: {needs: [c3], run: 'sleep 0.1; touch "effects/$BATON_TASK_ID.$BATON_ATTEMPT"'}
  spawner:
    run: |
      sleep 0.1; touch "effects/spawner.$BATON_ATTEMPT"
      cat > "$BATON_OUTPUT" <<'JSON'
      {"spawn": [
        {"id": "s1", "run": "sleep 0.1; touch effects/s1.$BATON_ATTEMPT"},
        {"id": "s2", "needs": ["s1"], "run": "sleep 0.1; touch effects/s2.$BATON_ATTEMPT"},
        {"id": "s3", "needs": ["s2"], "run": "sleep 0.1; touch effects/s3.$BATON_ATTEMPT"}
      ]}
      JSON
  fanout:
    foreach: {items: "{{ ['x', 'y', 'z'] }}", concurrency: 2}
    workflow:
      inline:
        name: part
        inputs: {part: {type: string}}
        tasks:
          p1:
            run: sleep 0.1; touch "effects/p1-$PART.$BATON_ATTEMPT"
            env: {PART: "{{ inputs.part }}"}
          p2:
            needs: [p1]
            run: sleep 0.1; touch "effects/p2-$PART.$BATON_ATTEMPT"
            env: {PART: "{{ inputs.part }}"}
      inputs: {part: "{{ item }}"}
  templated:
    needs: [items]
    uses: touch
    with: {name: templated}
  after:
    needs: [child, spawner, templated, fanout]
    run: sleep 0.1; touch "effects/after.$BATON_ATTEMPT"
"#;

#[test]
fn foreach_subworkflows_spawns_and_templates_survive_kills_without_repeating_work() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("patterns.yaml"), PATTERNS).unwrap();
    std::fs::create_dir_all(dir.path().join("templates")).unwrap();
    std::fs::write(
        dir.path().join("templates/touch.yaml"),
        "name: touch\nparams:\n  name: {type: string}\ntask:\n  run: sleep 0.1; touch \"effects/{{ params.name }}.$BATON_ATTEMPT\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("effects")).unwrap();

    let mut random = Lcg(11);
    let mut kills = 0;
    let store_path = dir.path().join(".baton/baton.db");
    let parent = loop {
        let after = Duration::from_millis(60 + random.below(200));
        assert!(
            kill_after(baton(dir.path(), &["run", "patterns.yaml"]), after),
            "`baton run` ended on its own: is the spec valid?"
        );
        kills += 1;
        if let Ok(store) = SqliteStore::open(&store_path)
            && let Some(run) = all_runs(&store)
                .iter()
                .find(|run| run.workflow == "patterns")
        {
            break run.run_id.clone();
        }
    };
    while kills < 15
        && kill_after(
            baton(dir.path(), &["resume", &parent]),
            Duration::from_millis(20 + random.below(250)),
        )
    {
        kills += 1;
    }
    assert!(kills >= 5, "the run finished after {kills} kills");
    let status = baton(dir.path(), &["resume", &parent]).status().unwrap();
    assert!(status.success(), "the final resume failed: {status}");

    let store = SqliteStore::open(&store_path).unwrap();
    let runs = all_runs(&store);
    assert!(runs.len() >= 3, "the parent, its child and its spawned run");
    let effect = |name: &str| dir.path().join("effects").join(name).exists();
    let mut lost = 0;
    for run in &runs {
        assert_eq!(run.status, RunStatus::Succeeded, "{}", run.run_id);
        let events = block(store.events(&run.run_id)).unwrap();
        let mut succeeded: std::collections::BTreeMap<u32, u32> = Default::default();
        for event in &events {
            match *event {
                Event::TaskStarted { task, .. } => assert!(
                    !succeeded.contains_key(&task),
                    "task {task} of {} started again after it succeeded",
                    run.run_id
                ),
                Event::TaskSucceeded { task, attempt, .. } => {
                    assert!(succeeded.insert(task, attempt).is_none());
                }
                // An item that succeeded is never run by a later attempt.
                // The `items` task's (the first): `fanout`'s items are
                // child runs, checked as runs.
                Event::CopySucceeded {
                    task: 0,
                    copy,
                    attempt,
                    ..
                } if run.run_id == parent => {
                    assert!(effect(&format!("item-{copy}.{attempt}")));
                    for later in attempt + 1..attempt + 5 {
                        assert!(
                            !effect(&format!("item-{copy}.{later}")),
                            "item {copy} ran again at attempt {later}"
                        );
                    }
                }
                Event::AttemptLost { .. } => lost += 1,
                _ => {}
            }
        }
    }
    assert!(lost > 0, "no kill caught an attempt in flight");
    // The spawning process ran only until one attempt had spawned.
    let spawned_at = (1..20)
        .find(|attempt| block(store.summary(&format!("{parent}.spawner.{attempt}"))).is_ok())
        .expect("the spawned run is recorded");
    for later in spawned_at + 1..spawned_at + 5 {
        assert!(
            !effect(&format!("spawner.{later}")),
            "the spawning process ran again at attempt {later}"
        );
    }
    for name in [
        "p1-x",
        "p2-y",
        "p2-z",
        "c1",
        "c2",
        "c3",
        "c4",
        "s1",
        "s2",
        "s3",
        "templated",
        "after",
    ] {
        assert!(
            (1..20).any(|attempt| effect(&format!("{name}.{attempt}"))),
            "{name} never ran"
        );
    }
}

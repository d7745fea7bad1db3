//! Compensation that a dead process cut off goes on after resume, without
//! undoing twice what was already undone.

use std::sync::Arc;

use baton_core::run::{Event, RunStatus};
use baton_engine::Engine;
use baton_store::{SqliteStore, Store};

use crate::util::{config, start, until};

#[test]
fn compensation_cut_off_by_a_dead_process_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let open = || -> Engine {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&path).unwrap());
        Engine::with_store(config(dir.path()), store)
    };
    let spec = r#"
name: saga
on_failure: compensate
tasks:
  reserve:
    run: "true"
    compensate: {run: echo release >> undo.log}
  charge:
    needs: [reserve]
    run: "true"
    compensate:
      run: |
        touch refunding
        while [ ! -f go ]; do sleep 0.02; done
        echo refund >> undo.log
  ship:
    needs: [charge]
    run: "true"
    compensate: {run: echo unship >> undo.log}
  notify:
    needs: [ship]
    run: exit 1
"#;
    let first = tokio::runtime::Runtime::new().unwrap();
    let run_id = first.block_on(async {
        let mut handle = start(&open(), spec).await;
        until(&mut handle, |event| {
            matches!(event, Event::CompensationFinished { .. })
        })
        .await;
        while !dir.path().join("refunding").exists() {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        handle.run_id().to_owned()
    });
    first.shutdown_background();

    std::fs::write(dir.path().join("go"), "").unwrap();
    let second = tokio::runtime::Runtime::new().unwrap();
    let report = second.block_on(async {
        open()
            .resume(&run_id, false)
            .unwrap()
            .finish()
            .await
            .unwrap()
    });
    assert_eq!(report.status, RunStatus::Compensated, "{report:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("undo.log")).unwrap(),
        "unship\nrefund\nrelease\n",
        "ship was undone once, charge's refund went on, then reserve"
    );
}

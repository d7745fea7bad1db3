//! Compensation that a dead process cut off goes on after resume, without
//! undoing twice what was already undone.

use baton_core::run::{Event, RunStatus};

#[test]
fn compensation_cut_off_by_a_dead_process_goes_on_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
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
    let (_, report, _) = crate::util::cut_off_then_resumed(
        dir.path(),
        spec,
        |event| matches!(event, Event::CompensationFinished { .. }),
        "refunding",
    );
    assert_eq!(report.status, RunStatus::Compensated, "{report:#?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("undo.log")).unwrap(),
        "unship\nrefund\nrelease\n",
        "ship was undone once, charge's refund went on, then reserve"
    );
}

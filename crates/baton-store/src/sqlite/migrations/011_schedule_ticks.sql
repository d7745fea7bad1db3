-- Each tick of a workflow's schedule and what became of it: a run started
-- (its id), skipped (its previous run was still going), queued (until it
-- ends), or missed (passed over by the catch-up policy). The newest tick
-- is where the schedule goes on from after a restart.
CREATE TABLE schedule_ticks (
    workflow TEXT NOT NULL,
    tick_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (workflow, tick_at)
) WITHOUT ROWID;

-- Each tick of a workflow's schedule and what became of it: a run started
-- (its id), skipped (its previous run was still going), queued (until it
-- ends), or missed (passed over by the catch-up policy). The newest tick
-- is where the schedule goes on from after a restart, on any replica.
CREATE TABLE schedule_ticks (
    workflow text NOT NULL,
    tick_at bigint NOT NULL,
    outcome text NOT NULL,
    run_id text,
    recorded_at bigint NOT NULL,
    PRIMARY KEY (workflow, tick_at)
);

-- The worker queue the replicas share. A replica whose run routes an
-- attempt to a capability that none of its own workers can take at once
-- offers it here; any replica with a free worker that matches takes it
-- (`FOR UPDATE SKIP LOCKED`, so two never take one row), leases it, and
-- writes how it ended; the offering replica reads that back and deletes
-- the row. `owner` and `taken_by` are ids from `owners`: a row whose owner
-- stopped renewing is dropped (the run's next owner runs the task again),
-- and one taken by a replica that stopped is ended as lost.
CREATE TABLE work (
    ticket bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text NOT NULL,
    capability text COLLATE "C" NOT NULL,
    labels jsonb NOT NULL,
    fairness_key text COLLATE "C" NOT NULL,
    priority integer NOT NULL,
    run_id text COLLATE "C" NOT NULL,
    task_id text COLLATE "C" NOT NULL,
    item jsonb NOT NULL,
    queued_at bigint NOT NULL,
    taken_by text,
    ended jsonb
);
CREATE INDEX work_waiting ON work (capability, priority DESC, ticket) WHERE taken_by IS NULL;
CREATE INDEX work_ended ON work (owner) WHERE ended IS NOT NULL;
CREATE INDEX work_taken ON work (taken_by) WHERE taken_by IS NOT NULL AND ended IS NULL;

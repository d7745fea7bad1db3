ALTER TABLE runs ADD COLUMN workflow TEXT;
ALTER TABLE runs ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
ALTER TABLE runs ADD COLUMN started_at INTEGER;
ALTER TABLE runs ADD COLUMN finished_at INTEGER;
CREATE INDEX runs_by_start ON runs (started_at);
-- Apart from the row every append updates, so a large spec is written
-- once, not once per batch of events.
CREATE TABLE run_records (
    run INTEGER PRIMARY KEY REFERENCES runs (id),
    record TEXT NOT NULL
);

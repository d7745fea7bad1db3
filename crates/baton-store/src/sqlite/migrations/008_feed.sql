-- Every batch appended, in the order the store took them: one feed of
-- all runs' events that a reader can resume by position.
CREATE TABLE feed (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL REFERENCES runs (id),
    first_seq INTEGER NOT NULL
);
CREATE INDEX feed_by_run ON feed (run);
INSERT INTO feed (run, first_seq)
    SELECT event_batches.run, first_seq FROM event_batches
    JOIN runs ON runs.id = event_batches.run ORDER BY runs.started_at, first_seq;

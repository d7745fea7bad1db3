-- Events move to one row per appended batch (a JSON array): a commit
-- then writes one row, however many events it holds.
CREATE TABLE event_batches (
    run INTEGER NOT NULL REFERENCES runs (id),
    first_seq INTEGER NOT NULL,
    count INTEGER NOT NULL,
    events TEXT NOT NULL,
    PRIMARY KEY (run, first_seq)
) WITHOUT ROWID;
INSERT INTO event_batches (run, first_seq, count, events)
    SELECT run, seq, 1, '[' || event || ']' FROM events;
DROP TABLE events;
-- A task's row carries its provenance once it succeeded; digests are
-- 32-byte blobs, and only cacheable results are indexed by key.
CREATE TABLE tasks (
    run INTEGER NOT NULL REFERENCES runs (id),
    task INTEGER NOT NULL,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    cacheable INTEGER NOT NULL,
    attempt INTEGER,
    spec BLOB,
    inputs BLOB,
    output BLOB,
    artifacts BLOB,
    parents BLOB,
    digest BLOB,
    cache_key BLOB,
    PRIMARY KEY (run, task)
) WITHOUT ROWID;
CREATE INDEX tasks_by_cache_key ON tasks (cache_key) WHERE cache_key IS NOT NULL;
CREATE TABLE attempts (
    run INTEGER NOT NULL REFERENCES runs (id),
    task INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    finished_at INTEGER NOT NULL,
    error TEXT,
    PRIMARY KEY (run, task, attempt)
) WITHOUT ROWID;
CREATE TABLE outputs (
    run INTEGER NOT NULL REFERENCES runs (id),
    task INTEGER NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (run, task)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
    run INTEGER NOT NULL REFERENCES runs (id),
    events INTEGER NOT NULL,
    digest BLOB NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run, events)
);
CREATE TABLE cancel_requests (
    run INTEGER PRIMARY KEY REFERENCES runs (id)
);

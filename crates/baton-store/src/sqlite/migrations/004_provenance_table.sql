-- Provenance leaves the task rows for a table of its own: a record is
-- written once, so inserting it is cheaper than growing a row that was
-- written when its task started (twice the durable throughput's worth of
-- B-tree work), and the cache index only holds cacheable tasks.
CREATE TABLE provenance (
    run INTEGER NOT NULL REFERENCES runs (id),
    task INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    spec BLOB NOT NULL,
    inputs BLOB NOT NULL,
    output BLOB NOT NULL,
    artifacts BLOB NOT NULL,
    parents BLOB NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (run, task)
) WITHOUT ROWID;
INSERT INTO provenance
    SELECT run, task, attempt, spec, inputs, output, artifacts, parents, digest
    FROM tasks WHERE digest IS NOT NULL;
CREATE TABLE cache_keys (
    key BLOB NOT NULL,
    run INTEGER NOT NULL REFERENCES runs (id),
    task INTEGER NOT NULL,
    PRIMARY KEY (key, run, task)
) WITHOUT ROWID;
INSERT INTO cache_keys SELECT cache_key, run, task FROM tasks WHERE cache_key IS NOT NULL;
DROP INDEX tasks_by_cache_key;
ALTER TABLE tasks DROP COLUMN attempt;
ALTER TABLE tasks DROP COLUMN spec;
ALTER TABLE tasks DROP COLUMN inputs;
ALTER TABLE tasks DROP COLUMN output;
ALTER TABLE tasks DROP COLUMN artifacts;
ALTER TABLE tasks DROP COLUMN parents;
ALTER TABLE tasks DROP COLUMN digest;
ALTER TABLE tasks DROP COLUMN cache_key;

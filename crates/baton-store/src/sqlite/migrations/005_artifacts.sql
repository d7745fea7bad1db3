-- Artifacts produced and consumed; by digest too, so retention finds
-- the stored files some run still refers to. A task row no longer says
-- whether it is cacheable: `cache_keys` does, once it succeeded.
CREATE TABLE artifacts (
    run INTEGER NOT NULL REFERENCES runs (id),
    task INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    role TEXT NOT NULL,
    path TEXT NOT NULL,
    digest BLOB NOT NULL,
    size INTEGER NOT NULL,
    PRIMARY KEY (run, task, attempt, role, path)
) WITHOUT ROWID;
CREATE INDEX artifacts_by_digest ON artifacts (digest);
ALTER TABLE tasks DROP COLUMN cacheable;

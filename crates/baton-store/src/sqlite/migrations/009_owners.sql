-- Who drives runs: one row per process, its lease renewed while it lives.
-- A run names its owner and a fencing token that grows with every claim,
-- so a write from an owner that lost the run is refused.
CREATE TABLE owners (
    id TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    boot TEXT NOT NULL,
    process_start INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) WITHOUT ROWID;
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN claimed_at INTEGER;
CREATE INDEX runs_by_status ON runs (status);
-- Control requests get a position across runs, so a process watching the
-- file finds the ones left since it last looked.
CREATE TABLE controls_by_position (
    position INTEGER PRIMARY KEY AUTOINCREMENT,
    run INTEGER NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    control TEXT NOT NULL,
    UNIQUE (run, seq)
);
INSERT INTO controls_by_position (run, seq, control)
    SELECT run, seq, control FROM controls ORDER BY run, seq;
DROP TABLE controls;
ALTER TABLE controls_by_position RENAME TO controls;

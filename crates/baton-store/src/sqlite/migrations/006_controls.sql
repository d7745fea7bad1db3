-- Cancel requests become one kind of control request, kept in the
-- order they were asked.
CREATE TABLE controls (
    run INTEGER NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    control TEXT NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
INSERT INTO controls (run, seq, control)
    SELECT run, 0, '{"type":"cancel"}' FROM cancel_requests;
DROP TABLE cancel_requests;

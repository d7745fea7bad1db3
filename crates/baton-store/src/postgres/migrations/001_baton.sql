-- baton's tables on PostgreSQL: the SQLite schema in this dialect. Specs
-- and run records are `json`, which keeps their text as written (a
-- workflow's tasks are an object whose key order is the task order;
-- `jsonb` would reorder it); outputs and control requests are `jsonb`;
-- event batches are the text baton wrote, checked when read. Digests are 32-byte `bytea`. Times are milliseconds since the
-- epoch. Names that are listed in order sort bytewise (`COLLATE "C"`), as
-- in SQLite. Every write is one statement (one of the functions below, or a
-- plain insert or update), so the writer sends a whole group of them in
-- one pipelined transaction.
CREATE TABLE owners (
    id text PRIMARY KEY,
    pid bigint NOT NULL,
    host text NOT NULL,
    boot text NOT NULL,
    process_start bigint NOT NULL,
    expires_at bigint NOT NULL
);
CREATE TABLE runs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id text COLLATE "C" NOT NULL UNIQUE,
    workflow text NOT NULL,
    status text NOT NULL DEFAULT 'pending',
    started_at bigint,
    finished_at bigint,
    next_seq bigint NOT NULL DEFAULT 0,
    next_control bigint NOT NULL DEFAULT 0,
    owner text,
    token bigint NOT NULL DEFAULT 0,
    claimed_at bigint
);
CREATE INDEX runs_by_listing ON runs ((coalesce(started_at, 0)) DESC, run_id DESC);
CREATE INDEX runs_by_status ON runs (status, (coalesce(started_at, 0)) DESC, run_id DESC);
CREATE INDEX runs_by_workflow ON runs (workflow, (coalesce(started_at, 0)) DESC, run_id DESC);
CREATE INDEX runs_by_finish ON runs (finished_at) WHERE finished_at IS NOT NULL;
CREATE INDEX runs_unfinished ON runs (owner) WHERE status IN ('pending', 'running', 'paused');
-- Apart from the row every append updates, so a large spec is written once.
CREATE TABLE run_records (
    run bigint PRIMARY KEY,
    record json NOT NULL
);
CREATE TABLE event_batches (
    run bigint NOT NULL,
    first_seq bigint NOT NULL,
    count bigint NOT NULL,
    -- The batch's events as the JSON array baton wrote: checked when
    -- read, so the server need not parse it on the way in.
    events text NOT NULL,
    PRIMARY KEY (run, first_seq)
);
-- Every batch appended, in the order the store took them. Writers take
-- one lock per transaction (`baton_write_lock`), so positions are handed
-- out in commit order and a reader that resumes after a position misses
-- nothing committed later.
CREATE TABLE feed (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run bigint NOT NULL,
    first_seq bigint NOT NULL
);
CREATE INDEX feed_by_run ON feed (run);
CREATE TABLE tasks (
    run bigint NOT NULL,
    task integer NOT NULL,
    name text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL,
    started_at bigint,
    finished_at bigint,
    PRIMARY KEY (run, task)
);
CREATE TABLE attempts (
    run bigint NOT NULL,
    task integer NOT NULL,
    attempt integer NOT NULL,
    status text NOT NULL,
    started_at bigint NOT NULL,
    finished_at bigint NOT NULL,
    error text,
    PRIMARY KEY (run, task, attempt)
);
CREATE TABLE outputs (
    run bigint NOT NULL,
    task integer NOT NULL,
    output jsonb NOT NULL,
    PRIMARY KEY (run, task)
);
CREATE TABLE provenance (
    run bigint NOT NULL,
    task integer NOT NULL,
    attempt integer NOT NULL,
    spec bytea NOT NULL,
    inputs bytea NOT NULL,
    output bytea NOT NULL,
    artifacts bytea NOT NULL,
    parents bytea NOT NULL,
    digest bytea NOT NULL,
    PRIMARY KEY (run, task)
);
CREATE TABLE cache_keys (
    key bytea NOT NULL,
    run bigint NOT NULL,
    task integer NOT NULL,
    PRIMARY KEY (key, run, task)
);
CREATE TABLE artifacts (
    run bigint NOT NULL,
    task integer NOT NULL,
    attempt integer NOT NULL,
    role text COLLATE "C" NOT NULL,
    path text COLLATE "C" NOT NULL,
    digest bytea NOT NULL,
    size bigint NOT NULL,
    PRIMARY KEY (run, task, attempt, role, path)
);
CREATE INDEX artifacts_by_digest ON artifacts (digest);
CREATE TABLE checkpoints (
    run bigint NOT NULL,
    events bigint NOT NULL,
    digest bytea NOT NULL,
    data bytea NOT NULL,
    PRIMARY KEY (run, events)
);
CREATE TABLE controls (
    position bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run bigint NOT NULL,
    seq bigint NOT NULL,
    control jsonb NOT NULL,
    UNIQUE (run, seq)
);
CREATE TABLE workflows (
    name text COLLATE "C" NOT NULL,
    version integer NOT NULL,
    digest bytea NOT NULL,
    created_at bigint NOT NULL,
    spec json NOT NULL,
    PRIMARY KEY (name, version)
);
CREATE TABLE api_keys (
    id text COLLATE "C" PRIMARY KEY,
    name text NOT NULL,
    scope text NOT NULL,
    hash bytea NOT NULL,
    created_at bigint NOT NULL,
    revoked_at bigint
);

-- Large values compress with lz4 where the server has it (pglz costs
-- several times the CPU); elsewhere they keep the default.
DO $$
BEGIN
    ALTER TABLE event_batches ALTER COLUMN events SET COMPRESSION lz4;
    ALTER TABLE run_records ALTER COLUMN record SET COMPRESSION lz4;
    ALTER TABLE workflows ALTER COLUMN spec SET COMPRESSION lz4;
    ALTER TABLE checkpoints ALTER COLUMN data SET COMPRESSION lz4;
EXCEPTION WHEN feature_not_supported OR invalid_parameter_value THEN
    NULL;
END
$$;

-- Serialises the writers of this schema (of every replica): taken first in
-- each write transaction, held to its commit.
CREATE FUNCTION baton_write_lock() RETURNS void LANGUAGE sql AS $$
    SELECT pg_advisory_xact_lock(hashtext('baton:' || current_schema()))
$$;

CREATE FUNCTION baton_create(p_run text, p_workflow text, p_record text, p_owner text, p_now bigint)
RETURNS TABLE (outcome text, value bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
BEGIN
    PERFORM 1 FROM owners WHERE id = p_owner;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_owner', 0::bigint;
        RETURN;
    END IF;
    INSERT INTO runs (run_id, workflow, owner, token, claimed_at)
        VALUES (p_run, p_workflow, p_owner, 1, p_now)
        ON CONFLICT (run_id) DO NOTHING RETURNING id INTO v_id;
    IF v_id IS NULL THEN
        RETURN QUERY SELECT 'exists', 0::bigint;
        RETURN;
    END IF;
    INSERT INTO run_records (run, record) VALUES (v_id, p_record::json);
    RETURN QUERY SELECT 'ok', 1::bigint;
END
$$;

CREATE FUNCTION baton_claim(p_run text, p_owner text, p_now bigint, p_steal bigint)
RETURNS TABLE (outcome text, value bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_run record;
BEGIN
    PERFORM 1 FROM owners WHERE id = p_owner;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_owner', 0::bigint;
        RETURN;
    END IF;
    SELECT runs.id, runs.owner, runs.token, owners.expires_at INTO v_run
        FROM runs LEFT JOIN owners ON owners.id = runs.owner
        WHERE runs.run_id = p_run FOR UPDATE OF runs;
    IF NOT FOUND THEN
        RETURN QUERY SELECT 'unknown_run', 0::bigint;
        RETURN;
    END IF;
    IF v_run.owner IS NOT NULL AND v_run.expires_at IS NOT NULL AND v_run.owner <> p_owner
        AND v_run.expires_at > p_now AND p_steal IS DISTINCT FROM v_run.token THEN
        RETURN QUERY SELECT 'owned', v_run.token;
        RETURN;
    END IF;
    UPDATE runs SET owner = p_owner, token = v_run.token + 1, claimed_at = p_now
        WHERE id = v_run.id;
    RETURN QUERY SELECT 'ok', v_run.token + 1;
END
$$;

-- The run's row id if `p_token` is its fence; 'unknown_run' or 'fenced'.
CREATE FUNCTION baton_fenced(p_run text, p_token bigint, OUT outcome text, OUT id bigint, OUT next_seq bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v_run record;
BEGIN
    SELECT runs.id, runs.next_seq, runs.owner, runs.token INTO v_run
        FROM runs WHERE run_id = p_run FOR UPDATE;
    IF NOT FOUND THEN
        outcome := 'unknown_run';
    ELSIF v_run.owner IS NULL OR v_run.token <> p_token THEN
        outcome := 'fenced';
    ELSE
        outcome := 'ok';
        id := v_run.id;
        next_seq := v_run.next_seq;
    END IF;
END
$$;

-- The read-model rows come as typed columns, one array per field, and
-- are NULL when the append has none: parsing them from JSON was the largest
-- cost of an append, and each statement skipped saves an executor start.
CREATE FUNCTION baton_append(
    p_run text, p_first bigint, p_token bigint, p_count bigint, p_events text,
    p_started bigint, p_paused boolean, p_status text, p_finished bigint,
    p_output_tasks integer[], p_outputs text[],
    -- tasks: index, id, status, attempts, started, finished
    t_task integer[], t_id text[], t_status text[], t_attempts integer[],
    t_started bigint[], t_finished bigint[],
    -- provenance of the tasks that succeeded; parents end to end
    r_task integer[], r_attempt integer[], r_spec bytea[], r_inputs bytea[],
    r_output bytea[], r_artifacts bytea[], r_parents bytea[], r_digest bytea[],
    r_cache_key bytea[],
    -- ended attempts
    a_task integer[], a_attempt integer[], a_status text[], a_started bigint[],
    a_finished bigint[], a_error text[],
    -- artifacts
    f_task integer[], f_attempt integer[], f_role text[], f_path text[],
    f_digest bytea[], f_size bigint[])
RETURNS TABLE (outcome text, value bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_next bigint;
    v_owner text;
    v_token bigint;
BEGIN
    SELECT id, next_seq, owner, token INTO v_id, v_next, v_owner, v_token
        FROM runs WHERE run_id = p_run FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN QUERY SELECT 'unknown_run', 0::bigint;
        RETURN;
    END IF;
    IF v_owner IS NULL OR v_token <> p_token THEN
        RETURN QUERY SELECT 'fenced', 0::bigint;
        RETURN;
    END IF;
    IF v_next <> p_first THEN
        -- The same append sent again after a commit whose answer was lost
        -- (the connection broke): it is already there.
        IF p_count > 0 AND v_next = p_first + p_count AND EXISTS (
            SELECT 1 FROM event_batches WHERE run = v_id AND first_seq = p_first
                AND count = p_count AND events = p_events) THEN
            RETURN QUERY SELECT 'ok', 0::bigint;
            RETURN;
        END IF;
        RETURN QUERY SELECT 'conflict', v_next;
        RETURN;
    END IF;
    IF p_count > 0 THEN
        INSERT INTO event_batches (run, first_seq, count, events)
            VALUES (v_id, p_first, p_count, p_events);
        INSERT INTO feed (run, first_seq) VALUES (v_id, p_first);
    END IF;
    UPDATE runs SET next_seq = p_first + p_count,
        status = CASE
            WHEN p_status IS NOT NULL THEN p_status
            WHEN p_paused THEN 'paused'
            WHEN p_paused IS NOT NULL OR p_started IS NOT NULL THEN 'running'
            ELSE status END,
        started_at = coalesce(p_started, started_at),
        finished_at = coalesce(p_finished, finished_at)
        WHERE id = v_id;
    IF p_output_tasks IS NOT NULL THEN
        INSERT INTO outputs (run, task, output)
            SELECT v_id, o.task, o.output::jsonb
            FROM unnest(p_output_tasks, p_outputs) AS o (task, output)
            ON CONFLICT (run, task) DO UPDATE SET output = excluded.output;
    END IF;
    IF t_task IS NOT NULL THEN
        INSERT INTO tasks (run, task, name, status, attempts, started_at, finished_at)
            SELECT v_id, t.task, t.id, t.status, t.attempts, t.started, t.finished
            FROM unnest(t_task, t_id, t_status, t_attempts, t_started, t_finished)
                AS t (task, id, status, attempts, started, finished)
            ON CONFLICT (run, task) DO UPDATE SET status = excluded.status,
                attempts = excluded.attempts, started_at = excluded.started_at,
                finished_at = excluded.finished_at;
    END IF;
    IF r_task IS NOT NULL THEN
        INSERT INTO provenance (run, task, attempt, spec, inputs, output, artifacts, parents, digest)
            SELECT v_id, r.task, r.attempt, r.spec, r.inputs, r.output, r.artifacts, r.parents,
                r.digest
            FROM unnest(r_task, r_attempt, r_spec, r_inputs, r_output, r_artifacts, r_parents,
                r_digest) AS r (task, attempt, spec, inputs, output, artifacts, parents, digest);
        INSERT INTO cache_keys (key, run, task)
            SELECT k.key, v_id, k.task FROM unnest(r_cache_key, r_task) AS k (key, task)
            WHERE k.key IS NOT NULL;
    END IF;
    IF f_task IS NOT NULL THEN
        INSERT INTO artifacts (run, task, attempt, role, path, digest, size)
            SELECT v_id, f.task, f.attempt, f.role, f.path, f.digest, f.size
            FROM unnest(f_task, f_attempt, f_role, f_path, f_digest, f_size)
                AS f (task, attempt, role, path, digest, size)
            ON CONFLICT DO NOTHING;
    END IF;
    IF a_task IS NOT NULL THEN
        INSERT INTO attempts (run, task, attempt, status, started_at, finished_at, error)
            SELECT v_id, a.task, a.attempt, a.status, a.started, a.finished, a.error
            FROM unnest(a_task, a_attempt, a_status, a_started, a_finished, a_error)
                AS a (task, attempt, status, started, finished, error)
            ON CONFLICT (run, task, attempt) DO NOTHING;
    END IF;
    RETURN QUERY SELECT 'ok', 0::bigint;
END
$$;

CREATE FUNCTION baton_checkpoint(p_run text, p_token bigint, p_events bigint, p_digest bytea, p_data bytea)
RETURNS TABLE (outcome text, value bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_run record;
BEGIN
    SELECT * INTO v_run FROM baton_fenced(p_run, p_token);
    IF v_run.outcome = 'ok' THEN
        INSERT INTO checkpoints (run, events, digest, data)
            VALUES (v_run.id, p_events, p_digest, p_data)
            ON CONFLICT (run, events) DO UPDATE SET digest = excluded.digest, data = excluded.data;
    END IF;
    RETURN QUERY SELECT v_run.outcome, 0::bigint;
END
$$;

CREATE FUNCTION baton_control(p_run text, p_control text)
RETURNS TABLE (outcome text, value bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_seq bigint;
BEGIN
    UPDATE runs SET next_control = next_control + 1 WHERE run_id = p_run
        RETURNING id, next_control - 1 INTO v_id, v_seq;
    IF v_id IS NULL THEN
        RETURN QUERY SELECT 'unknown_run', 0::bigint;
        RETURN;
    END IF;
    INSERT INTO controls (run, seq, control) VALUES (v_id, v_seq, p_control::jsonb);
    RETURN QUERY SELECT 'ok', v_seq;
END
$$;

CREATE FUNCTION baton_delete(p_run text)
RETURNS TABLE (outcome text, value bigint) LANGUAGE plpgsql AS $$
DECLARE
    v_id bigint;
    v_status text;
BEGIN
    SELECT id, status INTO v_id, v_status FROM runs WHERE run_id = p_run FOR UPDATE;
    IF v_id IS NULL THEN
        RETURN QUERY SELECT 'unknown_run', 0::bigint;
        RETURN;
    END IF;
    IF v_status IN ('pending', 'running', 'paused') THEN
        RETURN QUERY SELECT 'unfinished', 0::bigint;
        RETURN;
    END IF;
    DELETE FROM run_records WHERE run = v_id;
    DELETE FROM event_batches WHERE run = v_id;
    DELETE FROM feed WHERE run = v_id;
    DELETE FROM tasks WHERE run = v_id;
    DELETE FROM attempts WHERE run = v_id;
    DELETE FROM outputs WHERE run = v_id;
    DELETE FROM provenance WHERE run = v_id;
    DELETE FROM cache_keys WHERE run = v_id;
    DELETE FROM artifacts WHERE run = v_id;
    DELETE FROM checkpoints WHERE run = v_id;
    DELETE FROM controls WHERE run = v_id;
    DELETE FROM runs WHERE id = v_id;
    RETURN QUERY SELECT 'ok', 0::bigint;
END
$$;

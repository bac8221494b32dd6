-- The runner store on PostgreSQL: queue and history shared by a fleet of
-- runners. Every time is milliseconds since the epoch by the database
-- server's clock (drydock_now_ms), so that runners whose clocks differ
-- agree on when a lease expires.
CREATE FUNCTION drydock_now_ms() RETURNS BIGINT LANGUAGE sql VOLATILE AS
$$ SELECT (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT $$;

CREATE TABLE runs (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    trigger TEXT NOT NULL,
    retry_of TEXT,
    created_ms BIGINT NOT NULL,
    started_ms BIGINT,
    finished_ms BIGINT,
    base_sha TEXT,
    tested_sha TEXT,
    summary TEXT,
    runner TEXT,
    owner TEXT,
    attempt INTEGER NOT NULL DEFAULT 0,
    lost INTEGER NOT NULL DEFAULT 0,
    lease_until_ms BIGINT,
    heartbeat_ms BIGINT,
    cancel_requested BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX runs_queued ON runs(seq) WHERE state = 'queued';
CREATE INDEX runs_running ON runs(lease_until_ms) WHERE state = 'running';
CREATE INDEX runs_candidates ON runs(repo, seq) WHERE kind = 'candidate' AND state IN ('queued', 'running');
CREATE INDEX runs_branch ON runs(repo, branch, seq);
CREATE INDEX runs_state ON runs(state, seq);

CREATE TABLE heads (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repo, branch)
);
CREATE TABLE deliveries (
    id TEXT PRIMARY KEY,
    received_ms BIGINT NOT NULL
);
CREATE TABLE attempts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    attempt INTEGER NOT NULL,
    runner TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_ms BIGINT NOT NULL,
    ended_ms BIGINT,
    outcome TEXT,
    PRIMARY KEY (run_id, attempt)
);
CREATE TABLE runners (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    url TEXT,
    pid INTEGER,
    started_ms BIGINT NOT NULL,
    seen_ms BIGINT NOT NULL
);

-- Wake-ups: whenever a run becomes claimable (queued) or stops running
-- (which may unblock the next candidate of its repository), every runner
-- listening on `drydock_queue` is told. Row triggers, so that a claim that
-- changed nothing notifies nobody.
CREATE FUNCTION drydock_notify_queue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('drydock_queue', '');
    RETURN NULL;
END $$;
CREATE TRIGGER runs_inserted AFTER INSERT ON runs
    FOR EACH ROW WHEN (NEW.state = 'queued') EXECUTE FUNCTION drydock_notify_queue();
CREATE TRIGGER runs_changed AFTER UPDATE OF state ON runs
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state
                       AND (NEW.state = 'queued' OR OLD.state = 'running'))
    EXECUTE FUNCTION drydock_notify_queue();

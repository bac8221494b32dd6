-- Queue semantics with leases: who runs a run (runner name, and owner: the
-- runner process's instance token), which attempt, until when its lease
-- holds, when it last beat, how many attempts were lost, and a persisted
-- cancel request. Runs of the first release that had ended ran once; a run
-- it left `running` has no lease, so it counts as expired (lease 0) and is
-- reclaimed as its next attempt.
ALTER TABLE runs ADD COLUMN runner TEXT;
ALTER TABLE runs ADD COLUMN owner TEXT;
ALTER TABLE runs ADD COLUMN attempt INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
ALTER TABLE runs ADD COLUMN lease_until_ms INTEGER;
ALTER TABLE runs ADD COLUMN heartbeat_ms INTEGER;
ALTER TABLE runs ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
UPDATE runs SET attempt = 1 WHERE state <> 'queued' AND started_ms IS NOT NULL;
UPDATE runs SET lease_until_ms = 0 WHERE state = 'running';
CREATE INDEX IF NOT EXISTS runs_candidates ON runs(repo, kind, state, seq);
-- One row per claim of a run: who had it and how that attempt ended
-- (a run state, `lost`: its lease expired, or `released`: its runner stopped).
CREATE TABLE attempts (
    run_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    runner TEXT NOT NULL,
    owner TEXT NOT NULL,
    claimed_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    outcome TEXT,
    PRIMARY KEY (run_id, attempt)
);
-- The runners sharing this store (one for SQLite): name, the live
-- process's instance token, where it runs, its address, when it last beat.
CREATE TABLE runners (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    url TEXT,
    pid INTEGER,
    started_ms INTEGER NOT NULL,
    seen_ms INTEGER NOT NULL
);

-- The schema of the first release (before migrations): queue and history,
-- branch heads seen, webhook deliveries handled. `IF NOT EXISTS` because a
-- database made by that release already has these tables (it had no
-- migration history): this migration then changes nothing.
CREATE TABLE IF NOT EXISTS runs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT,
    trigger TEXT NOT NULL,
    retry_of TEXT,
    created_ms INTEGER NOT NULL,
    started_ms INTEGER,
    finished_ms INTEGER,
    base_sha TEXT,
    tested_sha TEXT,
    summary TEXT
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state, seq);
CREATE INDEX IF NOT EXISTS runs_branch ON runs(repo, branch, seq);
CREATE TABLE IF NOT EXISTS heads (
    repo TEXT NOT NULL,
    branch TEXT NOT NULL,
    sha TEXT NOT NULL,
    PRIMARY KEY (repo, branch)
);
CREATE TABLE IF NOT EXISTS deliveries (
    id TEXT PRIMARY KEY,
    received_ms INTEGER NOT NULL
);

-- Trials: one execution of one case on one harness version with one seed. The unique
-- key is the cache key: a trial with the same harness content, case content, seed and
-- environment is not run again (unless --no-cache).
CREATE TABLE trials (
    id            INTEGER PRIMARY KEY,
    harness       TEXT    NOT NULL,
    harness_hash  TEXT    NOT NULL,             -- content hash of the harness root
    case_id       TEXT    NOT NULL,
    case_hash     TEXT    NOT NULL,             -- blake3 of input + fixtures + checks
    seed          INTEGER NOT NULL,
    env_fp        TEXT    NOT NULL,             -- environment fingerprint (command, limits, isolation, env values hashed)
    passed        INTEGER NOT NULL,
    status        TEXT    NOT NULL,             -- exited | signaled | timed_out | killed_for_limit | failed_to_start
    exit_code     INTEGER,
    reason        TEXT,                         -- one line for people when the trial failed
    checks        TEXT    NOT NULL,             -- JSON [{kind, passed, detail}]
    duration_ms   INTEGER NOT NULL,
    tokens        INTEGER,
    cost_usd      REAL,
    output        TEXT    NOT NULL,             -- stdout, clipped
    stderr_tail   TEXT    NOT NULL,
    trace_path    TEXT,                         -- the trace the trial wrote, kept on disk
    isolation     TEXT    NOT NULL,             -- JSON of the isolation in effect
    signature     TEXT,                         -- the failure's signature (canonical), when it failed
    created_at    TEXT    NOT NULL,
    UNIQUE (harness_hash, case_hash, seed, env_fp)
);
CREATE INDEX trials_case ON trials (case_id);

-- Case history: every status change with its reason (promotion, quarantine, merge…).
CREATE TABLE case_events (
    id          INTEGER PRIMARY KEY,
    case_id     TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    at          TEXT    NOT NULL
);
CREATE INDEX case_events_case ON case_events (case_id);

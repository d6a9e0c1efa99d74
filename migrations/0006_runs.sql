-- The nightly loop: runs and the proposals they gated. Every step is written before it
-- is acted on, so a killed run resumes (`run --resume`) without losing or duplicating.
CREATE TABLE runs (
    id          TEXT    PRIMARY KEY,           -- r-<time>-<pid>
    harness     TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('running', 'finished', 'failed')),
    options     TEXT    NOT NULL,              -- JSON of the budgets and choices
    iteration   INTEGER NOT NULL DEFAULT 0,    -- iterations finished
    spent_usd   REAL    NOT NULL DEFAULT 0,
    summary     TEXT,                          -- JSON autoharness.run/v1 when finished
    started_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE proposals (
    id           INTEGER PRIMARY KEY,
    run_id       TEXT    NOT NULL REFERENCES runs(id),
    iteration    INTEGER NOT NULL,
    cluster_id   TEXT    NOT NULL,
    provider     TEXT    NOT NULL,
    description  TEXT    NOT NULL,
    diff         TEXT    NOT NULL,
    diff_hash    TEXT    NOT NULL,
    prediction   TEXT,                         -- JSON {fixes: [...], risks: [...]}
    prediction_score TEXT,                     -- JSON: how the prediction held up after the gate
    prompt       TEXT,
    answer       TEXT,
    tokens_in    INTEGER,
    tokens_out   INTEGER,
    cost_usd     REAL    NOT NULL DEFAULT 0,
    error        TEXT,                         -- why the answer could not be used
    verdict      TEXT,                         -- pass | fail | error, once gated
    rule         TEXT,
    gate_id      INTEGER REFERENCES gates(id),
    accepted     INTEGER NOT NULL DEFAULT 0,
    created_at   TEXT    NOT NULL,
    UNIQUE (run_id, iteration, diff_hash)
);
CREATE INDEX proposals_cluster ON proposals (cluster_id);

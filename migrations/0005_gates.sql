-- Gate decisions: one row per gate, with the whole report (autoharness.gate/v1) as JSON.
CREATE TABLE gates (
    id              INTEGER PRIMARY KEY,
    harness         TEXT    NOT NULL,
    baseline_hash   TEXT    NOT NULL,
    candidate_hash  TEXT    NOT NULL,
    patch_hash      TEXT    NOT NULL,
    target          TEXT,
    verdict         TEXT    NOT NULL CHECK (verdict IN ('pass', 'fail')),
    rule            TEXT    NOT NULL,
    reason          TEXT    NOT NULL,
    trials          INTEGER NOT NULL,
    cost_usd        REAL    NOT NULL,
    report          TEXT    NOT NULL,
    created_at      TEXT    NOT NULL
);

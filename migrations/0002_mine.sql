-- Mining: failures of failed traces, clusters with persisted centroids, emitted cases.
CREATE TABLE clusters (
    id          TEXT    PRIMARY KEY,           -- k-xxxxxxxx, derived from the founding signature
    signature   TEXT    NOT NULL,              -- canonical founding signature
    signatures  TEXT    NOT NULL,              -- JSON array of every signature seen
    label       TEXT    NOT NULL,
    kind        TEXT    NOT NULL CHECK (kind IN ('infra', 'capability')),
    state       TEXT    NOT NULL DEFAULT 'observed' CHECK (state IN ('observed', 'targeted', 'fixed', 'regressed')),
    centroid    TEXT    NOT NULL,              -- JSON {term: weight}, top terms of the summed member vectors
    members     INTEGER NOT NULL,
    summary     TEXT,                          -- optional one-line root cause from an LLM
    created_at  TEXT    NOT NULL,
    updated_at  TEXT    NOT NULL
);

CREATE TABLE failures (
    id          INTEGER PRIMARY KEY,
    file_id     INTEGER NOT NULL REFERENCES trace_files(id) ON DELETE CASCADE,
    trace_seq   INTEGER NOT NULL,
    trace_id    TEXT    NOT NULL,
    format      TEXT    NOT NULL,
    cluster_id  TEXT    REFERENCES clusters(id),
    infra       INTEGER NOT NULL,
    signature   TEXT    NOT NULL,              -- canonical
    signal      TEXT    NOT NULL,
    step_kind   TEXT    NOT NULL,
    tool        TEXT,
    error_type  TEXT,
    template    TEXT    NOT NULL,
    step_id     TEXT,
    step_index  INTEGER,
    message     TEXT    NOT NULL,
    text        TEXT    NOT NULL,              -- decisive step + neighbourhood (similarity input)
    excerpt     TEXT    NOT NULL,
    seen_at     TEXT,                          -- when the failure happened (trace time)
    cost_usd    REAL,
    tokens      INTEGER,
    seed        TEXT    NOT NULL,              -- JSON: case input, fixtures, ground-truth checks
    mined_at    TEXT    NOT NULL,
    UNIQUE (file_id, trace_seq)
);
CREATE INDEX failures_cluster ON failures (cluster_id);

CREATE TABLE cases (
    id            TEXT    PRIMARY KEY,         -- c-xxxxxxxx, from cluster + input
    cluster_id    TEXT    NOT NULL REFERENCES clusters(id),
    harness       TEXT    NOT NULL,
    split         TEXT    NOT NULL CHECK (split IN ('train', 'holdout')),
    status        TEXT    NOT NULL DEFAULT 'candidate' CHECK (status IN ('candidate', 'active', 'quarantined', 'retired')),
    path          TEXT    NOT NULL,
    content_hash  TEXT    NOT NULL,            -- blake3 of the file as written; differs => edited by hand
    input_hash    TEXT    NOT NULL,
    failure_id    INTEGER REFERENCES failures(id) ON DELETE SET NULL,
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL
);
CREATE INDEX cases_cluster ON cases (cluster_id);

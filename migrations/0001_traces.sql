-- Trace files seen by ingestion, and the traces read from them.
CREATE TABLE trace_files (
    id          INTEGER PRIMARY KEY,
    path        TEXT    NOT NULL UNIQUE,      -- canonical path
    size        INTEGER NOT NULL,
    mtime_ns    INTEGER,                      -- with size, the fast "unchanged" check
    hash        TEXT    NOT NULL,             -- blake3 of the bytes on disk
    format      TEXT,                         -- NULL when not a trace file
    reason      TEXT    NOT NULL,             -- why this format, or why not a trace
    error       TEXT,                         -- fatal read/parse error, if any
    warnings    INTEGER NOT NULL DEFAULT 0,
    n_traces    INTEGER NOT NULL DEFAULT 0,
    scanned_at  TEXT    NOT NULL
);

CREATE TABLE traces (
    id            INTEGER PRIMARY KEY,
    file_id       INTEGER NOT NULL REFERENCES trace_files(id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,           -- order within the file
    trace_id      TEXT    NOT NULL,
    format        TEXT    NOT NULL,
    name          TEXT,
    outcome       TEXT    NOT NULL CHECK (outcome IN ('passed', 'failed', 'unknown')),
    evidence      TEXT    NOT NULL,           -- JSON array of {signal, detail, step, handled}
    n_steps       INTEGER NOT NULL,
    n_errors      INTEGER NOT NULL,
    input_tokens  INTEGER,
    output_tokens INTEGER,
    total_tokens  INTEGER,
    cost_usd      REAL,
    started_at    TEXT,
    ended_at      TEXT,
    location      TEXT,
    UNIQUE (file_id, seq)
);
CREATE INDEX traces_outcome ON traces (outcome);
CREATE INDEX traces_trace_id ON traces (trace_id);

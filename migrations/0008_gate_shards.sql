-- Shards of a partitioned gate (`gate PATCH --partition K/N`): one row per shard run, written
-- when it starts and completed when every trial it ran is recorded, so a merge
-- (`gate PATCH --merge`) can tell a finished shard from a missing or failed one.
CREATE TABLE gate_shards (
    id               INTEGER PRIMARY KEY,
    harness          TEXT    NOT NULL,
    patch_hash       TEXT    NOT NULL,             -- blake3 of the patch text
    partition_index  INTEGER NOT NULL,             -- K, 1-based
    partition_total  INTEGER NOT NULL,             -- N
    trials_k         INTEGER NOT NULL,             -- --trials: the first round's seeds 0..k (the merge's must match)
    target           TEXT,
    state            TEXT    NOT NULL CHECK (state IN ('running', 'done')),
    baseline_hash    TEXT,                         -- set when done
    candidate_hash   TEXT,
    cases            TEXT,                         -- JSON list of the case ids this shard ran
    trials           INTEGER,
    started_at       TEXT    NOT NULL,
    finished_at      TEXT
);
CREATE INDEX gate_shards_patch ON gate_shards (harness, patch_hash);

-- `run --partition K/N`: the leading runner (shard 1) asks the others for their shard of
-- each gate it runs. A request holds everything a follower needs without the leader's
-- checkout (the accepted patches so far, the candidate, the suite's case files, the gate's
-- options; flow::partitioned::GateRequest). It is closed once the leader has merged.
CREATE TABLE gate_requests (
    id               INTEGER PRIMARY KEY,
    run_id           TEXT    NOT NULL,
    harness          TEXT    NOT NULL,
    patch_hash       TEXT    NOT NULL,
    partition_total  INTEGER NOT NULL,
    request          TEXT    NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('open', 'closed')),
    created_at       TEXT    NOT NULL,
    closed_at        TEXT
);
CREATE INDEX gate_requests_open ON gate_requests (run_id, state);

-- A shard run for a request names it, and beats while it runs: a leader takes over a shard
-- whose runner stopped beating (killed, lost) instead of waiting for ever.
ALTER TABLE gate_shards ADD COLUMN request_id INTEGER;
ALTER TABLE gate_shards ADD COLUMN heartbeat_at TEXT;

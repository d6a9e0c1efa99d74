-- The step ids of each verdict-only failure, so `mine --judge` can find stored failures
-- with no cached judgement (the cache key hashes the text and the step ids) without
-- re-reading every file. A failure stored before this table has no row and is judged.
-- Failures with an explicit error are never judged and get no row.
CREATE TABLE failure_steps (
    failure_id  BIGINT  PRIMARY KEY REFERENCES failures(id) ON DELETE CASCADE,
    step_ids    TEXT    NOT NULL             -- JSON array of the trace's step ids
);

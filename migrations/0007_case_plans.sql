-- What the last case planning of a harness was made from (the failures in the window, their
-- clusters and the options): a re-mine that would plan the same skips reading every
-- failure's text and seed (`mine::plan_key`).
CREATE TABLE case_plans (
    harness    TEXT PRIMARY KEY,
    plan_hash  TEXT NOT NULL,
    planned_at TEXT NOT NULL
);

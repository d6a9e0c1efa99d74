-- Postgres twin of ../0007_case_plans.sql.
CREATE TABLE case_plans (
    harness    TEXT PRIMARY KEY,
    plan_hash  TEXT NOT NULL,
    planned_at TEXT NOT NULL
);

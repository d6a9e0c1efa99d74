-- Postgres twin of ../0010_failure_steps.sql.
CREATE TABLE failure_steps (
    failure_id  BIGINT  PRIMARY KEY REFERENCES failures(id) ON DELETE CASCADE,
    step_ids    TEXT    NOT NULL
);

-- Postgres twin of ../0009_judgements.sql.
CREATE TABLE judgements (
    content_hash  TEXT    NOT NULL,
    taxonomy      TEXT    NOT NULL,
    model         TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('accepted', 'rejected')),
    category      TEXT,
    step_id       TEXT,
    quote         TEXT,
    reason        TEXT,
    requests      BIGINT  NOT NULL,
    tokens        BIGINT  NOT NULL,
    cost_usd      DOUBLE PRECISION NOT NULL,
    judged_at     TEXT    NOT NULL,
    PRIMARY KEY (content_hash, taxonomy, model)
);

-- Judgements of `mine --judge`: one per (failure content, taxonomy version, model), so a
-- re-mine of the same failures asks the model nothing. A rejected judgement (its answers
-- failed the check twice) is cached too: asking again would cost the same and say the same.
CREATE TABLE judgements (
    content_hash  TEXT    NOT NULL,             -- blake3 of the failure's text and step ids
    taxonomy      TEXT    NOT NULL,             -- judge::TAXONOMY_VERSION
    model         TEXT    NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('accepted', 'rejected')),
    category      TEXT,                         -- set when accepted
    step_id       TEXT,
    quote         TEXT,
    reason        TEXT,                         -- why it was rejected
    requests      INTEGER NOT NULL,
    tokens        INTEGER NOT NULL,
    cost_usd      REAL    NOT NULL,
    judged_at     TEXT    NOT NULL,
    PRIMARY KEY (content_hash, taxonomy, model)
);

-- Postgres twin of ../0011_cluster_aliases.sql.
CREATE TABLE cluster_aliases (
    old_id      TEXT NOT NULL PRIMARY KEY,
    new_id      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE signature_rules (
    version     BIGINT NOT NULL PRIMARY KEY,
    applied_at  TEXT NOT NULL
);

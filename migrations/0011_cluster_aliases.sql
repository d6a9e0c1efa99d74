-- Cluster ids derive from signatures, so a change of the signature rules changes them.
-- The first mine under new rules signs the stored failures again and records, for each old
-- cluster whose failures all moved, the cluster they moved to: `clusters`, `cases`,
-- `run --target` and the case files resolve an old id through it (mine/alias.rs).
CREATE TABLE cluster_aliases (
    old_id      TEXT NOT NULL PRIMARY KEY,
    new_id      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

-- The signature rules (mine::signature::SIGNATURE_RULES) the stored failures were signed
-- under, one row per version a mine applied. No row in a store with failures: rules 1.
CREATE TABLE signature_rules (
    version     BIGINT NOT NULL PRIMARY KEY,
    applied_at  TEXT NOT NULL
);

-- Postgres twin of ../0004_mined_hash.sql.
ALTER TABLE trace_files ADD COLUMN mined_hash TEXT;
UPDATE trace_files SET mined_hash = hash WHERE id IN (SELECT DISTINCT file_id FROM failures);

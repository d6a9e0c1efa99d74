-- The content hash a file's failures were last analysed at. `traces ls` records files
-- too; without this, a `mine` after it would take them for already mined and skip them.
ALTER TABLE trace_files ADD COLUMN mined_hash TEXT;
UPDATE trace_files SET mined_hash = hash WHERE id IN (SELECT DISTINCT file_id FROM failures);

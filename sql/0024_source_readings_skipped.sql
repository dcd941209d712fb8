-- Issue 18: a full spool applies backpressure to polling sources. They skip polls rather than make
-- the spool drop its oldest records, and count the readings they did not take here.
ALTER TABLE sources ADD COLUMN readings_skipped bigint NOT NULL DEFAULT 0;
COMMENT ON COLUMN sources.readings_skipped IS
    'Readings a polling source did not take because the spool was full (polls skipped, never read)';

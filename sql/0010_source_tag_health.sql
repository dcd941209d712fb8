-- Per-tag health of a gateway source: how many tags are live, and which failed and why
-- (an OPC UA server refusing a monitored item, a bad status), not only the source's last error.

ALTER TABLE sources ADD COLUMN tags_total integer NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN tags_live integer NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN tag_errors jsonb NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN sources.tag_errors IS 'Tags that are not live, as {tag name: reason}';

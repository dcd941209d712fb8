-- Per-tag health of a gateway source: how many tags are live, and which failed and why
-- (an OPC UA server refusing a monitored item, a bad status), not only the source's last error.

ALTER TABLE sources ADD COLUMN tags_total integer NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN tags_live integer NOT NULL DEFAULT 0;
ALTER TABLE sources ADD COLUMN tag_errors jsonb NOT NULL DEFAULT '{}'::jsonb;
COMMENT ON COLUMN sources.tag_errors IS 'Tags that are not live, as {tag name: reason}';

-- A write-back whose value does not fit the tag's type or range is 'invalid' (HTTP 400): the
-- gateway refused it before the device saw anything, unlike 'failed' (the device or link failed).
ALTER TABLE write_requests DROP CONSTRAINT write_requests_status_check;
ALTER TABLE write_requests ADD CONSTRAINT write_requests_status_check
    CHECK (status IN ('pending', 'done', 'failed', 'refused', 'invalid'));

-- Gateway: per-source health for GET /api/v1/sources, write-back requests and their audit trail,
-- and whether a tag's timestamps come from the device or from the gateway.

ALTER TABLE tags ADD COLUMN timestamp_source text NOT NULL DEFAULT 'device'
    CHECK (timestamp_source IN ('device', 'gateway'));
ALTER TABLE tags ADD COLUMN writable boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN tags.timestamp_source IS 'device: samples carry the source timestamp; gateway: stamped on receipt';

CREATE TABLE sources (
    name              text PRIMARY KEY,
    kind              text NOT NULL,
    connected         boolean NOT NULL,
    last_error        text NOT NULL DEFAULT '',
    last_error_at     timestamptz,
    readings_total    bigint NOT NULL DEFAULT 0,
    readings_per_s    double precision NOT NULL DEFAULT 0,
    dead_letters_total bigint NOT NULL DEFAULT 0,
    reconnects_total  bigint NOT NULL DEFAULT 0,
    spool_records     bigint NOT NULL DEFAULT 0,
    spool_bytes       bigint NOT NULL DEFAULT 0,
    spool_dropped     bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE sources IS 'Health of each gateway source, refreshed every few seconds by the gateway';

-- A write-back asked for over HTTP and carried out by the gateway that serves the tag.
CREATE TABLE write_requests (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tag_id       integer NOT NULL REFERENCES tags (id),
    value        jsonb NOT NULL,
    requested_by text NOT NULL,
    role         text NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now(),
    status       text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed', 'refused')),
    detail       text NOT NULL DEFAULT '',
    done_at      timestamptz
);
CREATE INDEX write_requests_pending ON write_requests (id) WHERE status = 'pending';
COMMENT ON TABLE write_requests IS 'Audit trail of every write-back: who asked, what, and what came of it';

CREATE VIEW write_audit AS
SELECT w.id, t.name AS tag, w.value, w.requested_by, w.role, w.requested_at, w.status, w.detail, w.done_at
FROM write_requests w JOIN tags t ON t.id = w.tag_id;

GRANT SELECT ON sources, write_requests, write_audit TO shopfloor_reader;

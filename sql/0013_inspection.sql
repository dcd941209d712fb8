-- Camera inspection: stations (camera, its machine, model and threshold) and one row per inspected image.
-- inspections is a hypertable on TimescaleDB and a plain table on PostgreSQL (one row per image, low rate).

CREATE TABLE inspection_stations (
    station text PRIMARY KEY CHECK (station ~ '^[A-Za-z0-9_.-]{1,64}$'),
    machine text NOT NULL,
    model text NOT NULL,
    threshold double precision NOT NULL DEFAULT 0.5 CHECK (threshold > 0 AND threshold < 1),
    retention_days integer NOT NULL DEFAULT 90 CHECK (retention_days > 0)
);
COMMENT ON TABLE inspection_stations IS 'Camera stations: the machine they watch, the model that judges, NG threshold, image retention';

CREATE TABLE inspections (
    id bigint GENERATED ALWAYS AS IDENTITY,
    ts timestamptz NOT NULL,
    station text NOT NULL REFERENCES inspection_stations (station),
    machine text NOT NULL,
    lot text,
    operation text,
    verdict text NOT NULL CHECK (verdict IN ('ok', 'ng')),
    class text NOT NULL,
    score double precision NOT NULL,
    detail jsonb NOT NULL DEFAULT '{}',
    image_sha256 text NOT NULL CHECK (image_sha256 ~ '^[0-9a-f]{64}$'),
    image_format text NOT NULL,
    width integer NOT NULL,
    height integer NOT NULL,
    model text NOT NULL,
    model_version text NOT NULL,
    model_sha256 text NOT NULL,
    latency_ms double precision NOT NULL,
    source text NOT NULL DEFAULT 'api',
    PRIMARY KEY (id, ts)
);
SELECT sf_make_timeseries('inspections') WHERE sf_has_timescale();
CREATE INDEX inspections_station_ts ON inspections (station, ts DESC);
CREATE INDEX inspections_lot ON inspections (lot, operation) WHERE lot IS NOT NULL;
CREATE INDEX inspections_image ON inspections (image_sha256);
COMMENT ON TABLE inspections IS 'One camera inspection: verdict, class, score and the model that judged the stored image';

CREATE VIEW inspection_results AS
SELECT i.id, i.ts, i.station, i.machine, i.lot, i.operation, i.verdict, i.class, i.score,
       i.detail -> 'mask' AS mask, i.detail -> 'boxes' AS boxes, i.image_sha256, i.model, i.model_version,
       i.latency_ms, i.source
FROM inspections i;
COMMENT ON VIEW inspection_results IS 'Camera inspections for analysts: one row per image judged';

CREATE VIEW inspection_ng_by_lot AS
SELECT lot, operation, station, count(*) FILTER (WHERE verdict = 'ng') AS ng, count(*) AS inspected
FROM inspections WHERE lot IS NOT NULL GROUP BY lot, operation, station;
COMMENT ON VIEW inspection_ng_by_lot IS 'NG and inspected counts per lot, operation and station';

-- Which camera-folder file became which inspection: a restarted watcher finds a file it already judged here
-- (written in the same transaction as the inspection) and only moves it on. A name may recur with new content.
CREATE TABLE inspection_files (
    source text NOT NULL,
    file text NOT NULL,
    sha256 text NOT NULL,
    inspection_id bigint NOT NULL,
    seen_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, file, sha256)
);
COMMENT ON TABLE inspection_files IS 'Camera-folder files already inspected, by source, file name and content';

-- Genealogy with the camera's verdicts: the lot itself (depth 0) and every lot lot_trace() reaches, each with how
-- many of its images were inspected and judged NG. Up from a raw lot: which finished lots hold a part found NG.
CREATE FUNCTION lot_trace_inspections(lot_id text, direction text, max_depth integer DEFAULT 100)
RETURNS TABLE (lot text, depth integer, item text, path text[], inspected bigint, ng bigint)
LANGUAGE sql STABLE AS $$
    WITH reach AS (
        SELECT l.id AS lot, 0 AS depth, i.code AS item, ARRAY[l.id] AS path
        FROM lots l JOIN items i ON i.id = l.item_id WHERE l.id = lot_id
        UNION ALL
        SELECT t.lot, t.depth, t.item, t.path FROM lot_trace(lot_id, direction, max_depth) t
    )
    SELECT r.lot, r.depth, r.item, r.path, count(x.id), count(x.id) FILTER (WHERE x.verdict = 'ng')
    FROM reach r LEFT JOIN inspections x ON x.lot = r.lot
    GROUP BY r.lot, r.depth, r.item, r.path
    ORDER BY r.depth, r.lot
$$;
COMMENT ON FUNCTION lot_trace_inspections(text, text, integer) IS
    'lot_trace() with each reached lot''s camera inspections: how many, and how many NG';

-- Rollups at 1 minute and 1 hour, refreshed incrementally; retention per tag class; views and a
-- read-only role for people who query with SQL.
--
-- TimescaleDB's continuous aggregates need its Timescale licence, which Debian's Apache-2 build
-- lacks, so the rollups are plain tables on both backends and refresh_rollups() keeps them current.

CREATE TABLE rollup_1m (
    tag_id integer NOT NULL,
    bucket timestamptz NOT NULL,
    min    double precision NOT NULL,
    max    double precision NOT NULL,
    avg    double precision NOT NULL,
    count  bigint NOT NULL,
    first  double precision NOT NULL,
    last   double precision NOT NULL,
    PRIMARY KEY (tag_id, bucket)
);
CREATE TABLE rollup_1h (LIKE rollup_1m INCLUDING ALL);
COMMENT ON TABLE rollup_1m IS 'Per-minute min/max/avg/count/first/last of good and uncertain samples';

-- What the writer touched since the last refresh: one row per flush, its tags and time span.
CREATE TABLE rollup_dirty (
    tag_ids integer[] NOT NULL,
    lo      timestamptz NOT NULL,
    hi      timestamptz NOT NULL
);

-- Recompute the rollup buckets touched since the last call; returns the number of 1-minute rows written.
CREATE FUNCTION refresh_rollups() RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    n bigint;
BEGIN
    -- one refresher at a time: two would upsert the same buckets in different orders
    PERFORM pg_advisory_xact_lock(hashtext('shopfloor.refresh_rollups'));
    CREATE TEMP TABLE IF NOT EXISTS sf_refresh (tag_id integer, lo timestamptz, hi timestamptz) ON COMMIT DROP;
    CREATE TEMP TABLE IF NOT EXISTS sf_refresh_hours (tag_id integer, hour timestamptz) ON COMMIT DROP;
    TRUNCATE sf_refresh, sf_refresh_hours;
    -- per tag, the touched minute ranges merged where they overlap or meet (gaps and islands),
    -- so late data from last week recomputes last week's minutes, not everything since
    WITH d AS (DELETE FROM rollup_dirty RETURNING tag_ids, lo, hi),
    r AS (SELECT t AS tag_id, time_bucket(interval '1 minute', lo) AS lo,
                 time_bucket(interval '1 minute', hi) + interval '1 minute' AS hi
          FROM d, unnest(d.tag_ids) AS t),
    o AS (SELECT *, max(hi) OVER (PARTITION BY tag_id ORDER BY lo, hi
                                  ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_hi
          FROM r),
    g AS (SELECT *, count(*) FILTER (WHERE prev_hi IS NULL OR lo > prev_hi)
                    OVER (PARTITION BY tag_id ORDER BY lo, hi) AS island
          FROM o)
    INSERT INTO sf_refresh SELECT tag_id, min(lo), max(hi) FROM g GROUP BY tag_id, island;

    INSERT INTO rollup_1m (tag_id, bucket, min, max, avg, count, first, last)
    SELECT s.tag_id, time_bucket(interval '1 minute', s.ts), min(s.value), max(s.value), avg(s.value), count(*),
           first(s.value, s.ts), last(s.value, s.ts)
    FROM sf_refresh r
    JOIN samples s ON s.tag_id = r.tag_id AND s.ts >= r.lo AND s.ts < r.hi
    WHERE s.quality >= 64 AND s.value <> 'NaN'::float8
    GROUP BY 1, 2
    ON CONFLICT (tag_id, bucket) DO UPDATE
        SET min = EXCLUDED.min, max = EXCLUDED.max, avg = EXCLUDED.avg, count = EXCLUDED.count,
            first = EXCLUDED.first, last = EXCLUDED.last;
    GET DIAGNOSTICS n = ROW_COUNT;

    -- two islands can share an hour: recompute each touched hour once
    INSERT INTO sf_refresh_hours
    SELECT DISTINCT tag_id, generate_series(time_bucket(interval '1 hour', lo),
                                            time_bucket(interval '1 hour', hi - interval '1 minute'),
                                            interval '1 hour')
    FROM sf_refresh;

    INSERT INTO rollup_1h (tag_id, bucket, min, max, avg, count, first, last)
    SELECT m.tag_id, h.hour, min(m.min), max(m.max),
           sum(m.avg * m.count) / sum(m.count), sum(m.count), first(m.first, m.bucket), last(m.last, m.bucket)
    FROM sf_refresh_hours h
    JOIN rollup_1m m ON m.tag_id = h.tag_id AND m.bucket >= h.hour AND m.bucket < h.hour + interval '1 hour'
    GROUP BY 1, 2
    ON CONFLICT (tag_id, bucket) DO UPDATE
        SET min = EXCLUDED.min, max = EXCLUDED.max, avg = EXCLUDED.avg, count = EXCLUDED.count,
            first = EXCLUDED.first, last = EXCLUDED.last;
    RETURN n;
END $$;

-- Drop what each retention class no longer keeps; whole chunks/partitions go when every class is
-- done with them, the rest by DELETE. Returns one row per table with the rows removed.
CREATE FUNCTION apply_retention(at timestamptz DEFAULT now())
RETURNS TABLE (relation text, removed bigint)
LANGUAGE plpgsql AS $$
DECLARE
    horizon interval;
    keeps_forever boolean;
    part record;
    n bigint;
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['samples', 'events'] LOOP
        -- the longest raw retention among classes that have tags decides which chunks go whole
        SELECT max(c.raw), bool_or(c.raw IS NULL) INTO horizon, keeps_forever
        FROM retention_classes c WHERE EXISTS (SELECT FROM tags t WHERE t.retention_class = c.name);
        n := 0;
        IF horizon IS NOT NULL AND NOT keeps_forever THEN
            IF sf_has_timescale() THEN
                SELECT count(*) INTO n FROM drop_chunks(tbl::regclass, older_than => at - horizon);
            ELSE
                FOR part IN
                    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = tbl::regclass
                      AND to_date(right(c.relname, 8), 'YYYYMMDD') + 1 <= (at - horizon) AT TIME ZONE 'UTC'
                LOOP
                    EXECUTE format('DROP TABLE %I', part.relname);
                    n := n + 1;
                END LOOP;
            END IF;
        END IF;
        relation := tbl || ' (chunks dropped)'; removed := n; RETURN NEXT;

        EXECUTE format($q$
            DELETE FROM %I s USING tags t, retention_classes c
            WHERE s.tag_id = t.id AND c.name = t.retention_class AND c.raw IS NOT NULL AND s.ts < $1 - c.raw
        $q$, tbl) USING at;
        GET DIAGNOSTICS n = ROW_COUNT;
        relation := tbl; removed := n; RETURN NEXT;
    END LOOP;

    DELETE FROM rollup_1m s USING tags t, retention_classes c
    WHERE s.tag_id = t.id AND c.name = t.retention_class AND c.rollup_1m IS NOT NULL AND s.bucket < at - c.rollup_1m;
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'rollup_1m'; removed := n; RETURN NEXT;

    DELETE FROM rollup_1h s USING tags t, retention_classes c
    WHERE s.tag_id = t.id AND c.name = t.retention_class AND c.rollup_1h IS NOT NULL AND s.bucket < at - c.rollup_1h;
    GET DIAGNOSTICS n = ROW_COUNT;
    relation := 'rollup_1h'; removed := n; RETURN NEXT;
END $$;

-- Views that read like the plant: tag names, units, machines, quality names.
CREATE VIEW tag_list AS
SELECT t.id, t.name, t.unit, t.description, t.category, m.name AS machine, t.data_type, t.deadband,
       t.source, t.retention_class
FROM tags t LEFT JOIN machines m ON m.id = t.machine_id;

CREATE VIEW samples_named AS
SELECT t.name AS tag, s.ts, s.value, t.unit, quality_name(s.quality) AS quality, s.quality AS quality_code,
       t.category, m.name AS machine
FROM samples s JOIN tags t ON t.id = s.tag_id LEFT JOIN machines m ON m.id = t.machine_id;

CREATE VIEW events_named AS
SELECT t.name AS tag, e.ts, e.value, quality_name(e.quality) AS quality, e.quality AS quality_code,
       t.category, m.name AS machine
FROM events e JOIN tags t ON t.id = e.tag_id LEFT JOIN machines m ON m.id = t.machine_id;

CREATE VIEW rollup_1m_named AS
SELECT t.name AS tag, r.bucket, r.min, r.max, r.avg, r.count, r.first, r.last, t.unit
FROM rollup_1m r JOIN tags t ON t.id = r.tag_id;

CREATE VIEW rollup_1h_named AS
SELECT t.name AS tag, r.bucket, r.min, r.max, r.avg, r.count, r.first, r.last, t.unit
FROM rollup_1h r JOIN tags t ON t.id = r.tag_id;

-- Analysts log in as a role that has shopfloor_reader: it can read everything and change nothing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'shopfloor_reader') THEN
        CREATE ROLE shopfloor_reader NOLOGIN;
    END IF;
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO shopfloor_reader', current_database());
END $$;
GRANT USAGE ON SCHEMA public TO shopfloor_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO shopfloor_reader;
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO shopfloor_reader;

-- ISO 22400-2 KPIs computed where the data is: from the twin's state intervals and part counts and
-- the MES calendar, planned downtime, operations, reports and energy meters. analytics/KPI.md
-- defines every term; in short, per machine and bucket (the window, a UTC day or a shift):
--
--   POT  planned operation time: shift time of the machine's calendar in the bucket (its line's
--        shifts, else the plant's shifts with line = ''; with neither, the whole bucket)
--   PDOT planned downtime (MES planned_downtime, overlaps merged) inside POT;  PBT = POT - PDOT
--   APT, ASUT, ADET, idle, planned_down: time in each twin state inside PBT
--   AOET time inside PBT while an MES operation ran on the machine; AUBT = APT + ASUT inside AOET
--   GQ, SQ from part_counts inside PBT (PQ = GQ + SQ);  RQ, first-pass good from operation_reports
--   PRI  planned cycle of the latest operation started on the machine (routing's cycle when the
--        operation has none; before any operation, the fastest routing the machine is eligible for)
--   energy: each cumulative kWh meter's increase inside the bucket x its share (as energy_per_good_unit)
--
-- Everything is set-based: state intervals and counts are read by index range per piece of PBT, so
-- the work grows with the rows in the window, not with the table. Ratios divide sums (a line sums
-- its machines first) and a zero denominator gives NULL.

-- KPIs read each machine's intervals and counts by time range, usually on pages all-visible: with the
-- rest of the row in the index they are index-only scans (about 10x faster over 30 days of 100 machines,
-- whose rows the twin writes interleaved across the heap).
CREATE INDEX state_intervals_kpi ON state_intervals (machine_id, start_ts) INCLUDE (end_ts, state);
CREATE INDEX part_counts_kpi ON part_counts (machine_id, ts) INCLUDE (good, scrap);

-- Base times (seconds) and quantities of each machine in each bucket of [window_start, window_end).
CREATE FUNCTION kpi_base(machine_ids integer[], window_start timestamptz, window_end timestamptz,
                         group_by text DEFAULT NULL)
RETURNS TABLE (machine_id integer, bucket_start timestamptz, bucket_end timestamptz, shift text,
               pot_s double precision, pdot_s double precision, apt_s double precision,
               asut_s double precision, adet_s double precision, idle_s double precision,
               planned_down_s double precision, aoet_s double precision, aubt_s double precision,
               failures bigint, gq bigint, sq bigint, pri_pq_s double precision, unrated_parts bigint,
               rq double precision, fpg double precision, energy_kwh double precision)
LANGUAGE sql STABLE
-- the plan is many small index lookups: JIT would spend seconds compiling what runs in milliseconds
SET jit = off
AS $$
WITH
-- each machine's calendar: its line's shifts when the line has any, else the plant's (line '')
mach AS (
    SELECT m.id, CASE WHEN EXISTS (SELECT FROM shifts s WHERE s.line = m.line) THEN m.line ELSE '' END AS cal
    FROM machines m WHERE m.id = ANY (machine_ids)
),
mcal AS (
    SELECT mach.id, mach.cal, EXISTS (SELECT FROM shifts s WHERE s.line = mach.cal) AS has_cal FROM mach
),
shift_in AS (
    SELECT c.id AS machine_id, s.name, greatest(s.start_ts, window_start) AS lo, least(s.end_ts, window_end) AS hi
    FROM mcal c JOIN shifts s ON s.line = c.cal AND s.start_ts < window_end AND s.end_ts > window_start
),
bucket AS (
    SELECT id AS machine_id, window_start AS b_lo, window_end AS b_hi, NULL::text AS shift
    FROM mcal WHERE group_by IS NULL
    UNION ALL
    -- UTC days: 24-hour steps from a UTC midnight, whatever the session's time zone
    SELECT c.id, greatest(d, window_start), least(d + interval '24 hours', window_end), NULL
    FROM mcal c, generate_series(date_bin(interval '24 hours', window_start, timestamptz '2000-01-01 00:00:00+00'),
                                 window_end, interval '24 hours') AS d
    WHERE group_by = 'day' AND d < window_end
    UNION ALL
    SELECT machine_id, lo, hi, name FROM shift_in WHERE group_by = 'shift'
),
-- POT: the bucket's shift time; a shift bucket is its own POT, a machine without calendar always plans
pot AS (
    SELECT b.machine_id, b.b_lo, b.b_lo AS lo, b.b_hi AS hi
    FROM bucket b JOIN mcal c ON c.id = b.machine_id
    WHERE group_by = 'shift' OR NOT c.has_cal
    UNION ALL
    SELECT b.machine_id, b.b_lo, greatest(b.b_lo, s.lo), least(b.b_hi, s.hi)
    FROM bucket b JOIN shift_in s ON s.machine_id = b.machine_id AND s.lo < b.b_hi AND s.hi > b.b_lo
    WHERE group_by IS DISTINCT FROM 'shift'
),
-- planned downtime merged where windows overlap, so PDOT never counts a minute twice
pd AS (
    SELECT p.machine_id, p.start_ts AS lo, p.end_ts AS hi,
           max(p.end_ts) OVER (PARTITION BY p.machine_id ORDER BY p.start_ts, p.end_ts
                               ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS prev_hi
    FROM planned_downtime p
    WHERE p.machine_id = ANY (machine_ids) AND p.start_ts < window_end AND p.end_ts > window_start
),
pd_merged AS (
    SELECT machine_id, min(lo) AS lo, max(hi) AS hi
    FROM (SELECT *, count(*) FILTER (WHERE prev_hi IS NULL OR lo > prev_hi)
                        OVER (PARTITION BY machine_id ORDER BY lo, hi) AS island
          FROM pd) x
    GROUP BY machine_id, island
),
pdot AS (
    SELECT p.machine_id, p.b_lo, p.lo AS p_lo, greatest(d.lo, p.lo) AS lo, least(d.hi, p.hi) AS hi
    FROM pot p JOIN pd_merged d ON d.machine_id = p.machine_id AND d.lo < p.hi AND d.hi > p.lo
),
-- PBT: each POT piece minus its downtime, as the gaps before, between and after the downtime pieces
pbt AS (
    SELECT machine_id, b_lo, lo, hi FROM (
        SELECT machine_id, b_lo, coalesce(lag(hi) OVER (PARTITION BY machine_id, b_lo, p_lo ORDER BY lo), p_lo) AS lo,
               lo AS hi
        FROM pdot
        UNION ALL
        SELECT p.machine_id, p.b_lo, coalesce(max(d.hi), p.lo), p.hi
        FROM pot p LEFT JOIN pdot d ON d.machine_id = p.machine_id AND d.b_lo = p.b_lo AND d.p_lo = p.lo
        GROUP BY p.machine_id, p.b_lo, p.lo, p.hi
    ) g
    WHERE hi > lo
),
ops AS (
    SELECT o.machine_id, o.started_at AS lo, coalesce(o.completed_at, 'infinity') AS hi
    FROM operations o
    WHERE o.machine_id = ANY (machine_ids) AND o.started_at < window_end
      AND coalesce(o.completed_at, 'infinity') > window_start
),
-- PBT pieces cut where operations start or end, so "an operation ran" and PRI are constant per segment
cut AS (
    SELECT machine_id, b_lo, lo AS g_lo, hi AS g_hi, lo AS t FROM pbt
    UNION
    SELECT g.machine_id, g.b_lo, g.lo, g.hi, x.t
    FROM pbt g JOIN ops o ON o.machine_id = g.machine_id AND o.lo < g.hi AND o.hi > g.lo
    CROSS JOIN LATERAL (VALUES (o.lo), (o.hi)) AS x (t)
    WHERE x.t > g.lo AND x.t < g.hi
),
seg AS (
    SELECT s.machine_id, s.b_lo, s.lo, s.hi,
           lag(s.hi) OVER (PARTITION BY s.machine_id, s.b_lo ORDER BY s.lo) AS prev_hi,
           EXISTS (SELECT FROM ops o WHERE o.machine_id = s.machine_id AND o.lo <= s.lo AND o.hi > s.lo) AS allocated,
           coalesce(
               (SELECT coalesce(o.planned_cycle_s, r.cycle_s)
                FROM operations o LEFT JOIN routing_operations r ON r.id = o.routing_operation_id
                WHERE o.machine_id = s.machine_id AND o.started_at <= s.lo
                  AND coalesce(o.planned_cycle_s, r.cycle_s) IS NOT NULL
                ORDER BY o.started_at DESC LIMIT 1),
               (SELECT min(r.cycle_s)
                FROM routing_operation_machines rm JOIN routing_operations r ON r.id = rm.routing_operation_id
                WHERE rm.machine_id = s.machine_id)) AS pri
    FROM (SELECT machine_id, b_lo, t AS lo,
                 coalesce(lead(t) OVER (PARTITION BY machine_id, b_lo, g_lo ORDER BY t), g_hi) AS hi
          FROM cut) s
),
-- time per state in each segment: the intervals starting inside it, the one running at its start
-- (the latest before it: intervals of a machine do not overlap) and the machine's open interval
seg_states AS (
    SELECT s.machine_id, s.b_lo, s.allocated, s.lo, s.hi, x.*
    FROM seg s CROSS JOIN LATERAL (
        SELECT sum(d) FILTER (WHERE i.state = 'producing') AS apt,
               sum(d) FILTER (WHERE i.state = 'setup') AS asut,
               sum(d) FILTER (WHERE i.state = 'unplanned_down') AS adet,
               sum(d) FILTER (WHERE i.state = 'idle') AS idle,
               sum(d) FILTER (WHERE i.state = 'planned_down') AS planned_down,
               -- a failure counts once per bucket: in the first segment of the bucket it touches
               count(*) FILTER (WHERE i.state = 'unplanned_down'
                                  AND (i.start_ts >= s.lo OR s.prev_hi IS NULL OR s.prev_hi <= i.start_ts)) AS failures
        FROM (
            SELECT c.state, c.start_ts, c.end_ts FROM state_intervals c
            WHERE c.machine_id = s.machine_id AND c.start_ts >= s.lo AND c.start_ts < s.hi
            UNION ALL
            (SELECT c.state, c.start_ts, c.end_ts FROM state_intervals c
             WHERE c.machine_id = s.machine_id AND c.start_ts < s.lo
             ORDER BY c.start_ts DESC LIMIT 1)
            UNION ALL
            SELECT o.state, o.state_since, greatest(now(), o.state_since) FROM machine_status o
            WHERE o.machine_id = s.machine_id AND o.state_since < s.hi
              AND o.state IN ('producing', 'idle', 'setup', 'unplanned_down', 'planned_down')
        ) i
        CROSS JOIN LATERAL (SELECT least(i.end_ts, s.hi) - greatest(i.start_ts, s.lo) AS d) dd
        WHERE i.end_ts > s.lo
    ) x
),
seg_counts AS (
    SELECT s.machine_id, s.b_lo, s.pri, c.good, c.scrap
    FROM seg s CROSS JOIN LATERAL (
        SELECT sum(p.good) AS good, sum(p.scrap) AS scrap FROM part_counts p
        WHERE p.machine_id = s.machine_id AND p.ts >= s.lo AND p.ts < s.hi
    ) c
),
times AS (
    SELECT machine_id, b_lo,
           extract(epoch FROM sum(apt))::float8 AS apt_s, extract(epoch FROM sum(asut))::float8 AS asut_s,
           extract(epoch FROM sum(adet))::float8 AS adet_s, extract(epoch FROM sum(idle))::float8 AS idle_s,
           extract(epoch FROM sum(planned_down))::float8 AS planned_down_s,
           extract(epoch FROM sum(hi - lo) FILTER (WHERE allocated))::float8 AS aoet_s,
           extract(epoch FROM sum(coalesce(apt, interval '0') + coalesce(asut, interval '0'))
                              FILTER (WHERE allocated))::float8 AS aubt_s,
           sum(failures)::bigint AS failures
    FROM seg_states GROUP BY machine_id, b_lo
),
counts AS (
    SELECT machine_id, b_lo, sum(good)::bigint AS gq, sum(scrap)::bigint AS sq,
           sum((good + scrap) * pri)::float8 AS pri_pq_s,
           sum(good + scrap) FILTER (WHERE pri IS NULL)::bigint AS unrated_parts
    FROM seg_counts GROUP BY machine_id, b_lo
),
-- people report when they can (breaks included), so reports count by their time in the bucket
reports AS (
    SELECT b.machine_id, b.b_lo, sum(r.rework)::float8 AS rq,
           sum(coalesce(r.first_pass_good, r.good))::float8 AS fpg
    FROM bucket b
    JOIN operations o ON o.machine_id = b.machine_id
    JOIN operation_reports r ON r.operation_id = o.id AND r.ts >= b.b_lo AND r.ts < b.b_hi
    GROUP BY b.machine_id, b.b_lo
),
-- POT and PDOT summed per bucket once (joined below), not rescanned per output row
pot_sum AS (
    SELECT machine_id, b_lo, extract(epoch FROM sum(hi - lo))::float8 AS s FROM pot GROUP BY machine_id, b_lo
),
pdot_sum AS (
    SELECT machine_id, b_lo, extract(epoch FROM sum(hi - lo))::float8 AS s FROM pdot GROUP BY machine_id, b_lo
),
-- each meter's increase over the samples inside the bucket times its share, as energy_per_good_unit()
-- counts it (0006): a drop is a counter that restarted from zero, nothing is interpolated to the edges
energy AS (
    SELECT b.machine_id, b.b_lo, sum(x.kwh) AS kwh
    FROM bucket b
    JOIN energy_meters em ON em.machine_id = b.machine_id
    CROSS JOIN LATERAL (
        SELECT coalesce(sum(em.share * CASE WHEN delta < 0 THEN value ELSE delta END), 0) AS kwh
        FROM (SELECT s.value, s.value - lag(s.value) OVER (ORDER BY s.ts) AS delta FROM samples s
              WHERE s.tag_id = em.tag_id AND s.ts >= b.b_lo AND s.ts < b.b_hi AND s.value <> 'NaN') steps
    ) x
    GROUP BY b.machine_id, b.b_lo
)
SELECT b.machine_id, b.b_lo, b.b_hi, b.shift,
       coalesce(ps.s, 0), coalesce(ds.s, 0),
       coalesce(t.apt_s, 0), coalesce(t.asut_s, 0), coalesce(t.adet_s, 0), coalesce(t.idle_s, 0),
       coalesce(t.planned_down_s, 0), coalesce(t.aoet_s, 0), coalesce(t.aubt_s, 0), coalesce(t.failures, 0),
       coalesce(c.gq, 0), coalesce(c.sq, 0), coalesce(c.pri_pq_s, 0), coalesce(c.unrated_parts, 0),
       r.rq, r.fpg, e.kwh
FROM bucket b
LEFT JOIN pot_sum ps ON ps.machine_id = b.machine_id AND ps.b_lo = b.b_lo
LEFT JOIN pdot_sum ds ON ds.machine_id = b.machine_id AND ds.b_lo = b.b_lo
LEFT JOIN times t ON t.machine_id = b.machine_id AND t.b_lo = b.b_lo
LEFT JOIN counts c ON c.machine_id = b.machine_id AND c.b_lo = b.b_lo
LEFT JOIN reports r ON r.machine_id = b.machine_id AND r.b_lo = b.b_lo
LEFT JOIN energy e ON e.machine_id = b.machine_id AND e.b_lo = b.b_lo
$$;
COMMENT ON FUNCTION kpi_base(integer[], timestamptz, timestamptz, text) IS
    'ISO 22400 base times (s) and quantities per machine and bucket (group_by NULL, ''day'' or ''shift'')';

-- One row of KPIs: who and when, the base times and quantities, then the ratios (NULL when undefined).
CREATE TYPE kpi_row AS (
    machine text, line text, bucket_start timestamptz, bucket_end timestamptz, shift text,
    pot_s double precision, pdot_s double precision, pbt_s double precision, apt_s double precision,
    asut_s double precision, adet_s double precision, idle_s double precision, planned_down_s double precision,
    aoet_s double precision, aubt_s double precision, failures bigint,
    pq bigint, gq bigint, sq bigint, rq double precision, fpg double precision,
    pri_pq_s double precision, unrated_parts bigint, energy_kwh double precision,
    availability double precision, effectiveness double precision, quality_rate double precision,
    oee double precision, setup_ratio double precision, technical_efficiency double precision,
    allocation_ratio double precision, scrap_ratio double precision, rework_ratio double precision,
    first_pass_yield double precision, energy_per_unit_kwh double precision,
    mtbf_s double precision, mttr_s double precision
);

-- KPIs of machines, or of their lines (per_line: times and quantities summed per line, then divided).
CREATE FUNCTION kpi_rows(machine_ids integer[], per_line boolean, window_start timestamptz,
                         window_end timestamptz, group_by text DEFAULT NULL)
RETURNS SETOF kpi_row
LANGUAGE sql STABLE AS $$
WITH b AS (
    SELECT k.*, m.name, m.line FROM kpi_base(machine_ids, window_start, window_end, group_by) k
    JOIN machines m ON m.id = k.machine_id
),
t AS (
    SELECT name AS machine, line, bucket_start, bucket_end, shift, pot_s, pdot_s, apt_s, asut_s, adet_s, idle_s,
           planned_down_s, aoet_s, aubt_s, failures, gq, sq, rq, fpg, pri_pq_s, unrated_parts, energy_kwh
    FROM b WHERE NOT per_line
    UNION ALL
    -- a line's MES and energy figures only when every machine has them: a part would mislead
    SELECT NULL, line, bucket_start, bucket_end, shift, sum(pot_s), sum(pdot_s), sum(apt_s), sum(asut_s),
           sum(adet_s), sum(idle_s), sum(planned_down_s), sum(aoet_s), sum(aubt_s), sum(failures)::bigint,
           sum(gq)::bigint, sum(sq)::bigint,
           CASE WHEN count(rq) = count(*) THEN sum(rq) END, CASE WHEN count(fpg) = count(*) THEN sum(fpg) END,
           sum(pri_pq_s), sum(unrated_parts)::bigint,
           CASE WHEN count(energy_kwh) = count(*) THEN sum(energy_kwh) END
    FROM b WHERE per_line
    GROUP BY line, bucket_start, bucket_end, shift
)
SELECT t.machine, t.line, t.bucket_start, t.bucket_end, t.shift,
       t.pot_s, t.pdot_s, t.pot_s - t.pdot_s, t.apt_s, t.asut_s, t.adet_s, t.idle_s, t.planned_down_s,
       t.aoet_s, t.aubt_s, t.failures, t.gq + t.sq, t.gq, t.sq, t.rq, t.fpg, t.pri_pq_s, t.unrated_parts,
       t.energy_kwh,
       k.availability, k.effectiveness, k.quality_rate, k.availability * k.effectiveness * k.quality_rate,
       t.asut_s / nullif(t.apt_s + t.asut_s, 0),  -- ISO 22400-2 setup rate: AUST / AUPT, AUPT = APT + AUST
       t.apt_s / nullif(t.apt_s + t.adet_s, 0),
       t.aubt_s / nullif(t.aoet_s, 0),
       t.sq::float8 / nullif(t.gq + t.sq, 0),
       t.rq / nullif(t.gq + t.sq, 0),
       t.fpg / nullif(t.gq + t.sq, 0),
       t.energy_kwh / nullif(t.gq, 0),
       t.apt_s / nullif(t.failures, 0),
       t.adet_s / nullif(t.failures, 0)
FROM t CROSS JOIN LATERAL (
    SELECT t.apt_s / nullif(t.pot_s - t.pdot_s, 0) AS availability,
           -- parts made with no known PRI would make effectiveness look better than it is
           CASE WHEN t.unrated_parts = 0 THEN t.pri_pq_s / nullif(t.apt_s, 0) END AS effectiveness,
           t.gq::float8 / nullif(t.gq + t.sq, 0) AS quality_rate
) k
ORDER BY t.line, t.machine, t.bucket_start
$$;
COMMENT ON FUNCTION kpi_rows(integer[], boolean, timestamptz, timestamptz, text) IS
    'ISO 22400 KPIs of the machines, or of their lines when per_line, per bucket';

CREATE FUNCTION kpi_check(start_ts timestamptz, end_ts timestamptz, group_by text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
    IF start_ts IS NULL OR end_ts IS NULL OR end_ts <= start_ts THEN
        RAISE EXCEPTION 'end_ts (%) must be after start_ts (%)', end_ts, start_ts
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF group_by IS NOT NULL AND group_by NOT IN ('shift', 'day') THEN
        RAISE EXCEPTION 'group_by must be NULL, ''shift'' or ''day'', not %', quote_literal(group_by)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
END $$;

-- KPIs of one machine over [start_ts, end_ts), whole or per 'shift' or UTC 'day'.
CREATE FUNCTION kpi_machine(machine_name text, start_ts timestamptz, end_ts timestamptz, group_by text DEFAULT NULL)
RETURNS SETOF kpi_row
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ids integer[];
BEGIN
    PERFORM kpi_check(start_ts, end_ts, group_by);
    ids := ARRAY(SELECT m.id FROM machines m WHERE m.name = machine_name);
    IF cardinality(ids) = 0 THEN
        RAISE EXCEPTION 'unknown machine %', quote_literal(machine_name) USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM kpi_rows(ids, false, start_ts, end_ts, group_by);
END $$;
COMMENT ON FUNCTION kpi_machine(text, timestamptz, timestamptz, text) IS
    'ISO 22400 KPIs of a machine over [start_ts, end_ts), whole (group_by NULL) or per ''shift'' or UTC ''day''';

-- KPIs of a line (every machine whose line it is, summed) over [start_ts, end_ts).
CREATE FUNCTION kpi_line(line_name text, start_ts timestamptz, end_ts timestamptz, group_by text DEFAULT NULL)
RETURNS SETOF kpi_row
LANGUAGE plpgsql STABLE AS $$
DECLARE
    ids integer[];
BEGIN
    PERFORM kpi_check(start_ts, end_ts, group_by);
    ids := ARRAY(SELECT m.id FROM machines m WHERE m.line = line_name);
    IF cardinality(ids) = 0 THEN
        RAISE EXCEPTION 'unknown line %', quote_literal(line_name) USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY SELECT * FROM kpi_rows(ids, true, start_ts, end_ts, group_by);
END $$;
COMMENT ON FUNCTION kpi_line(text, timestamptz, timestamptz, text) IS
    'ISO 22400 KPIs of a line (its machines'' times and quantities summed, then divided) over [start_ts, end_ts)';

-- For analysts: every machine and every line over the last 24 hours.
CREATE VIEW kpi_machines_24h AS
SELECT * FROM kpi_rows(ARRAY(SELECT id FROM machines), false, now() - interval '24 hours', now());

CREATE VIEW kpi_lines_24h AS
SELECT * FROM kpi_rows(ARRAY(SELECT id FROM machines), true, now() - interval '24 hours', now());

GRANT SELECT ON kpi_machines_24h, kpi_lines_24h TO shopfloor_reader;

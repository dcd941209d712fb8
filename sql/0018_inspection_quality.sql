-- Camera verdicts feed quality and genealogy.
--
-- 1. lot_trace() gains `inspected` and `ng`: how many of each reached lot's images a camera judged, and how many
--    NG. It replaces 0013's lot_trace_inspections(), a second walk of the same graph; 0006's walk is kept as
--    lot_trace_lots and wrapped, not copied.
-- 2. kpi_base() counts camera NG as scrap (analytics/KPI.md, "Camera NG as scrap"): per machine and bucket, for
--    each (lot, operation) the camera's NG beyond the scrap people reported on that operation in the bucket
--    moves from GQ to SQ (PQ unchanged, never below zero good). The machine's own counters stay as they were:
--    the camera judges parts the machine passed as good, and an NG part the operator also reported as scrap
--    counts once. 0007's kpi_base is kept as kpi_base_counted and wrapped, not copied.

DROP FUNCTION lot_trace_inspections(text, text, integer);
ALTER FUNCTION lot_trace(text, text, integer) RENAME TO lot_trace_lots;

CREATE FUNCTION lot_trace(lot_id text, direction text, max_depth integer DEFAULT 100)
RETURNS TABLE (lot text, depth integer, item text, quantity numeric, unit text, status text, path text[],
               inspected bigint, ng bigint)
LANGUAGE sql STABLE AS $$
    SELECT t.lot, t.depth, t.item, t.quantity, t.unit, t.status, t.path, v.inspected, v.ng
    FROM lot_trace_lots(lot_id, direction, max_depth) t
    -- one index probe (inspections_lot) per reached lot
    CROSS JOIN LATERAL (SELECT count(*) AS inspected, count(*) FILTER (WHERE x.verdict = 'ng') AS ng
                        FROM inspections x WHERE x.lot = t.lot) v
    ORDER BY t.depth, t.lot
$$;
COMMENT ON FUNCTION lot_trace(text, text, integer) IS
    'Lots reached from a lot: up = what it went into (toward finished goods), down = what it contains (toward raw); '
    'with each lot''s camera inspections and NG verdicts';

-- Camera NG beyond reported scrap, per machine and bucket: the inspections of the machine's stations in the
-- bucket grouped by (lot, operation), less the scrap reported in the bucket on that operation (an MES operation
-- named by its id or as work_order/seq); inspections without an operation have no report to meet.
CREATE FUNCTION kpi_camera_scrap(machine_id integer, bucket_start timestamptz, bucket_end timestamptz)
RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(sum(greatest(g.ng - coalesce(rep.scrap, 0), 0)), 0)::bigint
    FROM (SELECT x.lot, x.operation, count(*) AS ng
          FROM inspections x JOIN machines m ON m.name = x.machine
          WHERE m.id = kpi_camera_scrap.machine_id AND x.verdict = 'ng'
            AND x.ts >= kpi_camera_scrap.bucket_start AND x.ts < kpi_camera_scrap.bucket_end
          GROUP BY x.lot, x.operation) g
    LEFT JOIN LATERAL (
        SELECT sum(r.scrap) AS scrap
        FROM operations o JOIN operation_reports r ON r.operation_id = o.id
        WHERE g.operation IS NOT NULL AND (o.id::text = g.operation OR o.work_order_id || '/' || o.seq = g.operation)
          AND r.ts >= kpi_camera_scrap.bucket_start AND r.ts < kpi_camera_scrap.bucket_end
    ) rep ON true
$$;
COMMENT ON FUNCTION kpi_camera_scrap(integer, timestamptz, timestamptz) IS
    'Camera NG parts of a machine in a bucket that no scrap report on the same operation already counts';

ALTER FUNCTION kpi_base(integer[], timestamptz, timestamptz, text) RENAME TO kpi_base_counted;

CREATE FUNCTION kpi_base(machine_ids integer[], window_start timestamptz, window_end timestamptz,
                         group_by text DEFAULT NULL)
RETURNS TABLE (machine_id integer, bucket_start timestamptz, bucket_end timestamptz, shift text,
               pot_s double precision, pdot_s double precision, apt_s double precision,
               asut_s double precision, adet_s double precision, idle_s double precision,
               planned_down_s double precision, aoet_s double precision, aubt_s double precision,
               failures bigint, gq bigint, sq bigint, pri_pq_s double precision, unrated_parts bigint,
               rq double precision, fpg double precision, energy_kwh double precision)
LANGUAGE sql STABLE
SET jit = off
AS $$
    SELECT k.machine_id, k.bucket_start, k.bucket_end, k.shift, k.pot_s, k.pdot_s, k.apt_s, k.asut_s, k.adet_s,
           k.idle_s, k.planned_down_s, k.aoet_s, k.aubt_s, k.failures,
           k.gq - c.moved, k.sq + c.moved, k.pri_pq_s, k.unrated_parts, k.rq, k.fpg, k.energy_kwh
    FROM kpi_base_counted(machine_ids, window_start, window_end, group_by) k
    -- a part is moved only if the machine counted it good in the bucket
    CROSS JOIN LATERAL (SELECT least(kpi_camera_scrap(k.machine_id, k.bucket_start, k.bucket_end), k.gq) AS moved) c
$$;
COMMENT ON FUNCTION kpi_base(integer[], timestamptz, timestamptz, text) IS
    'ISO 22400 base times (s) and quantities per machine and bucket, camera NG beyond reported scrap moved from '
    'GQ to SQ (group_by NULL, ''day'' or ''shift'')';
COMMENT ON FUNCTION kpi_base_counted(integer[], timestamptz, timestamptz, text) IS
    'kpi_base() before camera NG: quantities as the machines counted them';

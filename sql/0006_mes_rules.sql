-- What the database guarantees about the MES records whoever writes them (the API or an analyst's SQL):
-- the genealogy stays acyclic, quantities are reported only on running operations, a machine runs one
-- recipe at a time. And what analysts read: named views, lot_trace(), recipe_at(), energy_per_good_unit().
--
-- Our own SQLSTATEs sit in class 23 (integrity constraint violation) so clients see an IntegrityError:
--   23S01 a genealogy edge would close a cycle
--   23S02 a quantity reported on an operation that is not running
--   23S03 a recipe activation overlapping another on the same machine

-- == Genealogy stays acyclic =======================================================================

-- Adding "consumed went into produced" closes a cycle exactly when consumed is already reachable going
-- up from produced (produced went into ... went into consumed). Checked once per statement over all
-- its new edges: a COPY of a whole graph is one set-based walk, not one walk per row. Production adds
-- edges into fresh lots, whose walk up stops at once.
CREATE FUNCTION sf_genealogy_no_cycle() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    -- one genealogy writer at a time: transactions adding A->B and B->A at once would each see no cycle
    -- (under READ COMMITTED the walk below runs on a snapshot taken after the lock is ours)
    PERFORM pg_advisory_xact_lock(54310, 0);
    WITH RECURSIVE up(edge, origin, start, lot) AS (
        SELECT n.id, n.consumed, n.produced, n.produced FROM new_edges n
        UNION  -- not ALL: each (edge, lot) once, so the walk ends even on a graph that already has a cycle
        SELECT up.edge, up.origin, up.start, c.produced
        FROM up JOIN lot_consumption c ON c.consumed = up.lot
        WHERE up.lot <> up.origin
    )
    SELECT up.origin AS consumed, up.start AS produced INTO bad
    FROM up
    WHERE up.lot = up.origin
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'lot % consumed into lot % would close a cycle in the genealogy', bad.consumed, bad.produced
            USING ERRCODE = '23S01', DETAIL = format('%s is already made, through other lots, from %s',
                                                     bad.consumed, bad.produced);
    END IF;
    RETURN NULL;
END $$;

-- transition tables cannot go with a column list, hence one trigger per event
CREATE TRIGGER lot_consumption_no_cycle_insert AFTER INSERT ON lot_consumption
    REFERENCING NEW TABLE AS new_edges FOR EACH STATEMENT EXECUTE FUNCTION sf_genealogy_no_cycle();
CREATE TRIGGER lot_consumption_no_cycle_update AFTER UPDATE ON lot_consumption
    REFERENCING NEW TABLE AS new_edges FOR EACH STATEMENT EXECUTE FUNCTION sf_genealogy_no_cycle();

-- == Quantities only on running operations =========================================================

CREATE FUNCTION sf_report_on_running_operation() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    current text;
BEGIN
    -- FOR SHARE: the operation cannot be completed while a report on it is being written
    SELECT o.status INTO current FROM operations o WHERE o.id = NEW.operation_id FOR SHARE;
    IF FOUND AND current <> 'running' THEN  -- an unknown operation is the foreign key's to refuse
        RAISE EXCEPTION 'operation % is %, quantities are reported only on a running operation',
                        NEW.operation_id, current
            USING ERRCODE = '23S02', DETAIL = current;
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER operation_reports_running BEFORE INSERT OR UPDATE OF operation_id ON operation_reports
    FOR EACH ROW EXECUTE FUNCTION sf_report_on_running_operation();

-- == One recipe at a time per machine ===============================================================

CREATE FUNCTION sf_recipe_activation_no_overlap() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    other timestamptz;
BEGIN
    -- per machine, as for the genealogy: two overlapping activations at once would each see no overlap
    PERFORM pg_advisory_xact_lock(54311, NEW.machine_id);
    SELECT a.start_ts INTO other FROM recipe_activations a
    WHERE a.machine_id = NEW.machine_id
      AND (TG_OP = 'INSERT' OR a.start_ts <> OLD.start_ts OR a.machine_id <> OLD.machine_id)
      AND tstzrange(a.start_ts, a.end_ts) && tstzrange(NEW.start_ts, NEW.end_ts)
    LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'machine % already runs a recipe activated at %, overlapping [%, %)',
                        NEW.machine_id, other, NEW.start_ts, coalesce(NEW.end_ts::text, 'open')
            USING ERRCODE = '23S03';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER recipe_activations_no_overlap BEFORE INSERT OR UPDATE ON recipe_activations
    FOR EACH ROW EXECUTE FUNCTION sf_recipe_activation_no_overlap();

-- == Views for analysts =============================================================================

CREATE VIEW lot_genealogy AS
SELECT c.id, c.consumed, ic.code AS consumed_item, c.produced, ip.code AS produced_item, c.quantity,
       lc.unit, c.ts, c.operation_id, o.work_order_id AS work_order, o.seq AS operation_seq
FROM lot_consumption c
JOIN lots lc ON lc.id = c.consumed JOIN items ic ON ic.id = lc.item_id
JOIN lots lp ON lp.id = c.produced JOIN items ip ON ip.id = lp.item_id
LEFT JOIN operations o ON o.id = c.operation_id;
COMMENT ON VIEW lot_genealogy IS 'Genealogy edges with item codes: lot consumed went into lot produced';

CREATE VIEW recipe_active AS
SELECT m.name AS machine, r.name AS recipe, r.version, r.parameters, a.start_ts AS since, a.machine_id, a.recipe_id
FROM recipe_activations a JOIN machines m ON m.id = a.machine_id JOIN recipes r ON r.id = a.recipe_id
WHERE a.start_ts <= now() AND (a.end_ts IS NULL OR a.end_ts > now());
COMMENT ON VIEW recipe_active IS 'The recipe version active on each machine now';

CREATE VIEW operator_on_machine AS
SELECT o.badge, o.name AS operator, m.name AS machine, s.start_ts, s.end_ts, s.end_ts IS NULL AS logged_in
FROM operator_sessions s JOIN operators o ON o.id = s.operator_id JOIN machines m ON m.id = s.machine_id;
COMMENT ON VIEW operator_on_machine IS 'Who was logged in on which machine when; logged_in while the session is open';

CREATE VIEW operation_progress AS
SELECT o.id, o.work_order_id AS work_order, o.seq, o.name, m.name AS machine, o.status, o.planned_cycle_s,
       o.started_at, o.completed_at,
       coalesce(sum(r.good), 0) AS good, coalesce(sum(r.scrap), 0) AS scrap, coalesce(sum(r.rework), 0) AS rework,
       coalesce(sum(coalesce(r.first_pass_good, r.good)), 0) AS first_pass_good, count(r.id) AS reports
FROM operations o
LEFT JOIN machines m ON m.id = o.machine_id
LEFT JOIN operation_reports r ON r.operation_id = o.id
GROUP BY o.id, m.name;
COMMENT ON VIEW operation_progress IS 'Each work-order operation with its reported totals (ISO 22400 GQ, SQ, RQ)';

-- == Functions ======================================================================================

-- Every lot reached from lot_id, each once at its shortest distance, with one shortest path to it.
-- up: what lot_id went into, toward finished goods; down: what it contains, toward raw material.
-- Walks the lot_consumption (consumed) / (produced) indexes hop by hop; stops at max_depth hops.
CREATE FUNCTION lot_trace(lot_id text, direction text, max_depth integer DEFAULT 100)
RETURNS TABLE (lot text, depth integer, item text, quantity numeric, unit text, status text, path text[])
LANGUAGE plpgsql STABLE AS $$
DECLARE
    near text;  -- the column of the lot we come from
    far text;   -- the column of the lot we go to
BEGIN
    IF direction = 'up' THEN
        near := 'consumed'; far := 'produced';
    ELSIF direction = 'down' THEN
        near := 'produced'; far := 'consumed';
    ELSE
        RAISE EXCEPTION 'direction must be up or down, got %', coalesce(direction, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF max_depth IS NULL OR max_depth < 1 THEN
        RAISE EXCEPTION 'max_depth must be at least 1, got %', coalesce(max_depth::text, 'null')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT FROM lots l WHERE l.id = lot_id) THEN
        RAISE EXCEPTION 'unknown lot %', lot_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN QUERY EXECUTE format($q$
        WITH RECURSIVE reach(lot, via, depth) AS (
            SELECT c.%2$I, c.%1$I, 1 FROM lot_consumption c WHERE c.%1$I = $1
            UNION  -- a diamond's lot comes back once per way in, not once per path
            SELECT c.%2$I, c.%1$I, r.depth + 1
            FROM reach r JOIN lot_consumption c ON c.%1$I = r.lot
            WHERE r.depth < $2
        ),
        nearest AS (SELECT DISTINCT ON (r.lot) r.lot, r.via, r.depth FROM reach r ORDER BY r.lot, r.depth, r.via),
        -- nearest is a tree (one via each), so paths are built once per lot
        tree(lot, depth, path) AS (
            SELECT n.lot, n.depth, ARRAY[$1, n.lot] FROM nearest n WHERE n.depth = 1
            UNION ALL
            SELECT n.lot, n.depth, t.path || n.lot FROM tree t JOIN nearest n ON n.via = t.lot AND n.depth = t.depth + 1
        )
        SELECT t.lot, t.depth, i.code, l.quantity, l.unit, l.status, t.path
        FROM tree t JOIN lots l ON l.id = t.lot JOIN items i ON i.id = l.item_id
        WHERE t.lot <> $1  -- only on a graph that already had a cycle
        ORDER BY t.depth, t.lot
    $q$, near, far) USING lot_id, max_depth;
END $$;
COMMENT ON FUNCTION lot_trace(text, text, integer) IS
    'Lots reached from a lot: up = what it went into (toward finished goods), down = what it contains (toward raw)';

CREATE FUNCTION recipe_at(machine_id integer, ts timestamptz)
RETURNS TABLE (recipe_id integer, recipe text, version integer, parameters jsonb, start_ts timestamptz,
               end_ts timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT r.id, r.name, r.version, r.parameters, a.start_ts, a.end_ts
    FROM recipe_activations a JOIN recipes r ON r.id = a.recipe_id
    WHERE a.machine_id = $1 AND a.start_ts <= $2 AND (a.end_ts IS NULL OR a.end_ts > $2)
    ORDER BY a.start_ts DESC
    LIMIT 1
$$;
COMMENT ON FUNCTION recipe_at(integer, timestamptz) IS 'The recipe version active on a machine at a time (or no row)';

CREATE FUNCTION recipe_at(machine text, ts timestamptz)
RETURNS TABLE (recipe_id integer, recipe text, version integer, parameters jsonb, start_ts timestamptz,
               end_ts timestamptz)
LANGUAGE sql STABLE AS $$
    SELECT ra.* FROM machines m, recipe_at(m.id, $2) ra WHERE m.name = $1
$$;
COMMENT ON FUNCTION recipe_at(text, timestamptz) IS 'The recipe version active on a machine, by name, at a time';

-- kWh per good part of a machine over [start_ts, end_ts): each meter's increase times its share,
-- over the good parts the twin counted. A counter that drops restarted from zero (as Prometheus increase()).
-- Only the samples inside the window count; nothing is interpolated to its edges.
CREATE FUNCTION energy_per_good_unit(machine_name text, start_ts timestamptz, end_ts timestamptz)
RETURNS TABLE (machine text, kwh double precision, good bigint, kwh_per_good double precision)
LANGUAGE sql STABLE AS $$
    WITH m AS (SELECT id, name FROM machines WHERE name = $1),
    steps AS (
        SELECT em.share, s.value, s.value - lag(s.value) OVER (PARTITION BY s.tag_id ORDER BY s.ts) AS delta
        FROM m JOIN energy_meters em ON em.machine_id = m.id JOIN samples s ON s.tag_id = em.tag_id
        WHERE s.ts >= $2 AND s.ts < $3 AND s.value <> 'NaN'
    ),
    energy AS (SELECT coalesce(sum(share * CASE WHEN delta < 0 THEN value ELSE delta END), 0) AS kwh FROM steps),
    parts AS (SELECT coalesce(sum(c.good), 0)::bigint AS good
              FROM m JOIN part_counts c ON c.machine_id = m.id WHERE c.ts >= $2 AND c.ts < $3)
    SELECT m.name, energy.kwh, parts.good, energy.kwh / nullif(parts.good, 0)
    FROM m, energy, parts
$$;
COMMENT ON FUNCTION energy_per_good_unit(text, timestamptz, timestamptz) IS
    'Metered kWh of a machine over a window, its good parts, and kWh per good part (NULL without parts)';

GRANT SELECT ON lot_genealogy, recipe_active, operator_on_machine, operation_progress TO shopfloor_reader;

-- Production scheduling: schedules, their immutable versions and planned operations, the solve runs.
-- A version is never changed in place: an event or a re-solve adds version n+1 (triggers refuse UPDATE/DELETE).

CREATE TABLE schedules (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL DEFAULT '',
    origin     timestamptz NOT NULL,                 -- time 0 of the model; model times are seconds from it
    objective  text NOT NULL CHECK (objective IN ('makespan', 'tardiness', 'weighted')),
    request    jsonb NOT NULL,                       -- the problem as submitted (orders, machines, calendar)
    created_by text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schedules IS 'A scheduling problem; its answers are schedule_versions';

CREATE TABLE schedule_runs (
    schedule_id bigint PRIMARY KEY REFERENCES schedules (id),
    state       text NOT NULL CHECK (state IN ('queued', 'running', 'done', 'failed', 'cancelled')),
    progress    jsonb NOT NULL DEFAULT '[]',         -- [[seconds, objective, bound], ...]
    error       text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE schedule_runs IS 'The background solve of a schedule: state and progress (best objective, bound over time)';

CREATE TABLE schedule_versions (
    schedule_id   bigint NOT NULL REFERENCES schedules (id),
    version       integer NOT NULL CHECK (version > 0),
    cause         jsonb NOT NULL,                    -- {"kind": "initial"} or the event
    status        text NOT NULL,                     -- solver status: OPTIMAL, FEASIBLE, CANCELLED
    objective     double precision,
    bound         double precision,
    gap           double precision,
    makespan_s    double precision NOT NULL,
    solve_s       double precision NOT NULL,
    instance      jsonb NOT NULL,                    -- the problem this version answers (after its event)
    diff          jsonb,                             -- against the previous version
    right_shift   jsonb,                             -- right-shift repair on the same event, for comparison
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (schedule_id, version)
);

CREATE TABLE schedule_operations (
    schedule_id bigint NOT NULL,
    version     integer NOT NULL,
    order_id    text NOT NULL,
    seq         integer NOT NULL,
    name        text NOT NULL DEFAULT '',
    machine     text NOT NULL,
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz NOT NULL CHECK (end_ts >= start_ts),
    setup_s     double precision NOT NULL DEFAULT 0,
    frozen      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (schedule_id, version, order_id, seq),
    FOREIGN KEY (schedule_id, version) REFERENCES schedule_versions (schedule_id, version)
);
CREATE INDEX schedule_operations_machine ON schedule_operations (machine, start_ts);

CREATE FUNCTION schedule_version_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'schedule versions are never changed in place: add a new version'
        USING ERRCODE = '23S14';
END $$;
CREATE TRIGGER schedule_versions_immutable BEFORE UPDATE OR DELETE ON schedule_versions
    FOR EACH ROW EXECUTE FUNCTION schedule_version_immutable();
CREATE TRIGGER schedule_operations_immutable BEFORE UPDATE OR DELETE ON schedule_operations
    FOR EACH ROW EXECUTE FUNCTION schedule_version_immutable();

-- what release writes into the MES operations
ALTER TABLE operations ADD COLUMN planned_machine_id integer REFERENCES machines (id);
ALTER TABLE operations ADD COLUMN planned_start timestamptz;
ALTER TABLE operations ADD COLUMN planned_end timestamptz;
ALTER TABLE operations ADD COLUMN planned_by text;   -- 'schedule <id> v<version>'

CREATE VIEW schedule_plan AS
SELECT s.id AS schedule_id, s.name AS schedule, o.version, o.order_id, o.seq, o.name AS operation, o.machine,
       o.start_ts, o.end_ts, o.setup_s, o.frozen, v.status, v.created_at AS version_created_at,
       o.version = max(o.version) OVER (PARTITION BY o.schedule_id) AS latest
FROM schedule_operations o
JOIN schedule_versions v USING (schedule_id, version)
JOIN schedules s ON s.id = o.schedule_id;
COMMENT ON VIEW schedule_plan IS 'Every planned operation of every schedule version; latest marks the newest version';

GRANT SELECT ON schedules, schedule_runs, schedule_versions, schedule_operations, schedule_plan TO shopfloor_reader;

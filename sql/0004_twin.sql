-- Twin: machine state intervals (ISO 22400), part counts, SPC alarms, the latest status of each
-- machine, the engine's snapshot (restored at start), and the registry of served models.
-- The twin writes intervals, counts, alarms, status and snapshot in one transaction, so a restart
-- resumes from exactly what was recorded: nothing counted twice, nothing skipped.

CREATE TABLE state_intervals (
    machine_id integer NOT NULL REFERENCES machines (id),
    state      text NOT NULL CHECK (state IN ('producing', 'idle', 'setup', 'unplanned_down', 'planned_down')),
    start_ts   timestamptz NOT NULL,
    end_ts     timestamptz NOT NULL CHECK (end_ts >= start_ts),
    PRIMARY KEY (machine_id, start_ts)
);
COMMENT ON TABLE state_intervals IS 'Closed machine state intervals [start_ts, end_ts); the open one is in machine_status';

CREATE TABLE part_counts (
    machine_id integer NOT NULL REFERENCES machines (id),
    ts         timestamptz NOT NULL,
    good       bigint NOT NULL CHECK (good >= 0),
    scrap      bigint NOT NULL CHECK (scrap >= 0),
    PRIMARY KEY (machine_id, ts)
);
COMMENT ON TABLE part_counts IS 'Parts made since the previous row of the machine, from its counters (resets and rollovers handled)';

CREATE TABLE alarms (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id      integer NOT NULL REFERENCES machines (id),
    tag_id          integer NOT NULL REFERENCES tags (id),
    ts              timestamptz NOT NULL,
    rules           text[] NOT NULL,
    value           double precision NOT NULL,
    raised_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alarms_machine_ts ON alarms (machine_id, ts DESC);
CREATE INDEX alarms_ts ON alarms (ts DESC);
COMMENT ON TABLE alarms IS 'A sensor point that broke SPC rules (Western Electric WE1-4, Nelson N1-8, EWMA, CUSUM+/-)';

CREATE TABLE machine_status (
    machine_id  integer PRIMARY KEY REFERENCES machines (id),
    state       text NOT NULL,
    state_since timestamptz,
    good_total  bigint NOT NULL DEFAULT 0,
    scrap_total bigint NOT NULL DEFAULT 0,
    sensors     jsonb NOT NULL DEFAULT '{}',
    predictions jsonb NOT NULL DEFAULT '{}',
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE machine_status IS 'What the twin knows of each machine now: state, counts, sensor health, model predictions';

CREATE TABLE twin_snapshots (
    name     text PRIMARY KEY,
    taken_at timestamptz NOT NULL,
    layout   jsonb NOT NULL,
    state    bytea NOT NULL
);
COMMENT ON TABLE twin_snapshots IS 'The twin engine''s arrays (msgpack), restored at start when the layout still matches';

CREATE TABLE models (
    name          text NOT NULL,
    sha256        text NOT NULL,
    kind          text NOT NULL,
    version       text NOT NULL,
    dataset       text NOT NULL,
    split         text NOT NULL,
    protocol      text NOT NULL,
    metrics       jsonb NOT NULL,
    card          jsonb NOT NULL,
    registered_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (name, sha256)
);
COMMENT ON TABLE models IS 'Every model the twin served: its data set, split, protocol, metrics and the sha256 of its ONNX file';

-- Closed intervals plus each machine's open one up to now: what KPIs over "until now" need.
CREATE VIEW state_timeline AS
SELECT m.name AS machine, i.state, i.start_ts, i.end_ts, false AS open
FROM state_intervals i JOIN machines m ON m.id = i.machine_id
UNION ALL
SELECT m.name, s.state, s.state_since, greatest(now(), s.state_since), true
FROM machine_status s JOIN machines m ON m.id = s.machine_id
WHERE s.state_since IS NOT NULL AND s.state <> 'unknown';

CREATE VIEW alarms_named AS
SELECT a.id, m.name AS machine, t.name AS tag, a.ts, a.rules, a.value, a.raised_at
FROM alarms a JOIN machines m ON m.id = a.machine_id JOIN tags t ON t.id = a.tag_id;

CREATE VIEW part_counts_named AS
SELECT m.name AS machine, c.ts, c.good, c.scrap FROM part_counts c JOIN machines m ON m.id = c.machine_id;

GRANT SELECT ON state_intervals, part_counts, alarms, machine_status, twin_snapshots, models,
    state_timeline, alarms_named, part_counts_named TO shopfloor_reader;

-- MES records, 4M1E: material (items, lots, consumption = genealogy), method (products, routings,
-- recipes and their activations), man (operators, skills, shift calendar, sessions), machine
-- (planned downtime), energy (meters mapped to machines), and work orders with their operations.
-- MES systems write these over HTTP (/api/v1/orders, /api/v1/lots...); analysts read them with SQL.

-- == Material ======================================================================================

CREATE TABLE items (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code <> ''),
    description text NOT NULL DEFAULT '',
    unit        text NOT NULL DEFAULT 'pcs'
);

CREATE TABLE lots (
    id         text PRIMARY KEY CHECK (id <> ''),
    item_id    integer NOT NULL REFERENCES items (id),
    quantity   numeric NOT NULL CHECK (quantity >= 0),
    unit       text NOT NULL DEFAULT 'pcs',
    status     text NOT NULL DEFAULT 'available'
               CHECK (status IN ('planned', 'available', 'in_process', 'consumed', 'finished', 'quarantined', 'scrapped')),
    created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE lots IS 'Material lots and batches: raw, intermediate and finished';

-- lot `consumed` went into lot `produced` (on an operation): the edges of the genealogy graph
CREATE TABLE lot_consumption (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    produced     text NOT NULL REFERENCES lots (id),
    consumed     text NOT NULL REFERENCES lots (id),
    operation_id bigint,  -- REFERENCES operations (id), added below
    quantity     numeric NOT NULL CHECK (quantity > 0),
    ts           timestamptz NOT NULL DEFAULT now(),
    CHECK (produced <> consumed)
);
CREATE INDEX lot_consumption_produced ON lot_consumption (produced);
CREATE INDEX lot_consumption_consumed ON lot_consumption (consumed);
COMMENT ON TABLE lot_consumption IS 'Genealogy: which lot went into which, how much, on which operation';

-- == Method ========================================================================================

CREATE TABLE products (
    id          integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code <> ''),
    item_id     integer REFERENCES items (id),
    description text NOT NULL DEFAULT ''
);

CREATE TABLE routings (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    product_id integer NOT NULL REFERENCES products (id),
    version    integer NOT NULL CHECK (version > 0),
    active     boolean NOT NULL DEFAULT true,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (product_id, version)
);

CREATE TABLE routing_operations (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    routing_id integer NOT NULL REFERENCES routings (id),
    seq        integer NOT NULL CHECK (seq > 0),
    name       text NOT NULL,
    setup_s    double precision NOT NULL DEFAULT 0 CHECK (setup_s >= 0),
    cycle_s    double precision NOT NULL CHECK (cycle_s > 0),  -- ISO 22400 PRI: planned runtime per item
    UNIQUE (routing_id, seq)
);

CREATE TABLE routing_operation_machines (
    routing_operation_id integer NOT NULL REFERENCES routing_operations (id),
    machine_id           integer NOT NULL REFERENCES machines (id),
    PRIMARY KEY (routing_operation_id, machine_id)
);
COMMENT ON TABLE routing_operation_machines IS 'Machines eligible for a routing operation';

CREATE TABLE recipes (
    id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL CHECK (name <> ''),
    version    integer NOT NULL CHECK (version > 0),
    product_id integer REFERENCES products (id),
    parameters jsonb NOT NULL DEFAULT '{}',  -- process parameters: {"temperature_setpoint": 180, ...}
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);

-- which recipe version ran on a machine when: [start_ts, end_ts), end_ts NULL while active
CREATE TABLE recipe_activations (
    machine_id integer NOT NULL REFERENCES machines (id),
    recipe_id  integer NOT NULL REFERENCES recipes (id),
    start_ts   timestamptz NOT NULL,
    end_ts     timestamptz CHECK (end_ts IS NULL OR end_ts > start_ts),
    PRIMARY KEY (machine_id, start_ts)
);

-- == Man ===========================================================================================

CREATE TABLE operators (
    id    integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    badge text NOT NULL UNIQUE CHECK (badge <> ''),
    name  text NOT NULL DEFAULT ''
);

CREATE TABLE operator_skills (
    operator_id integer NOT NULL REFERENCES operators (id),
    skill       text NOT NULL CHECK (skill <> ''),
    level       integer NOT NULL DEFAULT 1 CHECK (level BETWEEN 1 AND 5),
    PRIMARY KEY (operator_id, skill)
);

-- the shift calendar: one row per shift instance, [start_ts, end_ts)
CREATE TABLE shifts (
    id       integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name     text NOT NULL,           -- e.g. 'early', 'late', 'night'
    line     text NOT NULL DEFAULT '',  -- '' = every line
    start_ts timestamptz NOT NULL,
    end_ts   timestamptz NOT NULL CHECK (end_ts > start_ts),
    UNIQUE (line, start_ts)
);
COMMENT ON TABLE shifts IS 'Shift calendar: planned operation time (ISO 22400 POT) comes from here';

-- who was logged in on which machine when: [start_ts, end_ts), end_ts NULL while logged in
CREATE TABLE operator_sessions (
    operator_id integer NOT NULL REFERENCES operators (id),
    machine_id  integer NOT NULL REFERENCES machines (id),
    start_ts    timestamptz NOT NULL,
    end_ts      timestamptz CHECK (end_ts IS NULL OR end_ts > start_ts),
    PRIMARY KEY (operator_id, machine_id, start_ts)
);

-- == Machine =======================================================================================

CREATE TABLE planned_downtime (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    machine_id integer NOT NULL REFERENCES machines (id),
    kind       text NOT NULL CHECK (kind IN ('maintenance', 'planned_stop', 'break', 'no_orders')),
    start_ts   timestamptz NOT NULL,
    end_ts     timestamptz NOT NULL CHECK (end_ts > start_ts),
    reason     text NOT NULL DEFAULT ''
);
CREATE INDEX planned_downtime_machine ON planned_downtime (machine_id, start_ts);
COMMENT ON TABLE planned_downtime IS 'Planned downtime and maintenance windows (ISO 22400 PDOT), subtracted from POT to give PBT';

-- == Energy ========================================================================================

-- a meter (a cumulative kWh tag) measures some share of a machine's energy
CREATE TABLE energy_meters (
    tag_id     integer NOT NULL REFERENCES tags (id),
    machine_id integer NOT NULL REFERENCES machines (id),
    share      double precision NOT NULL DEFAULT 1 CHECK (share > 0 AND share <= 1),
    PRIMARY KEY (tag_id, machine_id)
);

-- == Work orders and operations ====================================================================

CREATE TABLE work_orders (
    id           text PRIMARY KEY CHECK (id <> ''),
    product_id   integer NOT NULL REFERENCES products (id),
    routing_id   integer REFERENCES routings (id),
    quantity     numeric NOT NULL CHECK (quantity > 0),
    due_ts       timestamptz,
    priority     integer NOT NULL DEFAULT 0,
    status       text NOT NULL DEFAULT 'created'
                 CHECK (status IN ('created', 'released', 'in_progress', 'completed', 'cancelled')),
    created_at   timestamptz NOT NULL DEFAULT now(),
    released_at  timestamptz,
    completed_at timestamptz
);

CREATE TABLE operations (
    id                   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    work_order_id        text NOT NULL REFERENCES work_orders (id),
    seq                  integer NOT NULL CHECK (seq > 0),
    routing_operation_id integer REFERENCES routing_operations (id),
    name                 text NOT NULL DEFAULT '',
    machine_id           integer REFERENCES machines (id),
    planned_cycle_s      double precision CHECK (planned_cycle_s > 0),  -- PRI for this operation
    status               text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'completed')),
    started_at           timestamptz,
    completed_at         timestamptz,
    UNIQUE (work_order_id, seq)
);
CREATE INDEX operations_machine ON operations (machine_id, started_at);

-- quantities reported on a running operation: ISO 22400 GQ, SQ, RQ (PQ = good + scrap + rework)
CREATE TABLE operation_reports (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    operation_id bigint NOT NULL REFERENCES operations (id),
    ts           timestamptz NOT NULL DEFAULT now(),
    good         numeric NOT NULL DEFAULT 0 CHECK (good >= 0),
    scrap        numeric NOT NULL DEFAULT 0 CHECK (scrap >= 0),
    rework       numeric NOT NULL DEFAULT 0 CHECK (rework >= 0),
    first_pass_good numeric CHECK (first_pass_good >= 0),  -- good the first time through; NULL = all good were
    reported_by  text NOT NULL DEFAULT ''
);
CREATE INDEX operation_reports_operation ON operation_reports (operation_id, ts);

ALTER TABLE lot_consumption ADD FOREIGN KEY (operation_id) REFERENCES operations (id);

GRANT SELECT ON ALL TABLES IN SCHEMA public TO shopfloor_reader;

-- A p-chart per camera station: the NG fraction of every `pchart_n` consecutive inspections is one subgroup,
-- judged against p̄ learned from the station's first `pchart_baseline` subgroups (then frozen), with the twin's
-- Western Electric and Nelson rules; an out-of-control episode is one alarm (rule 'spc') of the station's machine
-- and its tag `<station>.ng_fraction`, written the way the twin writes its SPC alarms (inspection/pchart.py).
-- Subgroups by count, not by time: every point has the same n (constant limits, equal power), it closes when the
-- n-th part is judged (an alarm comes with the part that shows it), and a stopped line makes no empty points.

ALTER TABLE inspection_stations
    ADD COLUMN pchart_n integer NOT NULL DEFAULT 25 CHECK (pchart_n BETWEEN 2 AND 10000),
    ADD COLUMN pchart_baseline integer NOT NULL DEFAULT 20 CHECK (pchart_baseline BETWEEN 2 AND 1000);
COMMENT ON COLUMN inspection_stations.pchart_n IS 'Inspections per p-chart subgroup';
COMMENT ON COLUMN inspection_stations.pchart_baseline IS 'Subgroups p̄ is learned from before it is frozen';

-- The running chart of a station: the open subgroup, p̄ once frozen, and the alarm tracker's state. One row per
-- station, locked by each inspection that counts into it, so concurrent writers (API, camera folders) add up.
CREATE TABLE inspection_pchart (
    station     text PRIMARY KEY REFERENCES inspection_stations (station),
    n           integer NOT NULL CHECK (n >= 2),          -- the pchart_n this chart runs with
    baseline    integer NOT NULL CHECK (baseline >= 2),
    start_seq   bigint NOT NULL DEFAULT 0,                -- subgroups up to this belong to an earlier chart
    p_bar       double precision CHECK (p_bar > 0 AND p_bar < 1),  -- NULL while learning
    frozen_at   timestamptz,
    open_n      integer NOT NULL DEFAULT 0,
    open_ng     integer NOT NULL DEFAULT 0,
    open_first  timestamptz,
    open_last   timestamptz,
    tracker     jsonb                                     -- twin.alarms.AlarmTracker.dump()
);
COMMENT ON TABLE inspection_pchart IS 'Each camera station''s running p-chart: open subgroup, frozen p̄, alarm state';

-- Every closed subgroup as it was judged: the record the chart is read from and the alarms came from.
CREATE TABLE inspection_pchart_points (
    station   text NOT NULL REFERENCES inspection_stations (station),
    seq       bigint NOT NULL,
    first_ts  timestamptz NOT NULL,
    ts        timestamptz NOT NULL,                       -- the subgroup's last inspection
    n         integer NOT NULL,
    ng        integer NOT NULL CHECK (ng BETWEEN 0 AND n),
    p         double precision NOT NULL,
    cl        double precision,                           -- NULL: learning p̄, not judged
    ucl       double precision,
    lcl       double precision,
    rules     text[] NOT NULL DEFAULT '{}',
    PRIMARY KEY (station, seq)
);
CREATE INDEX inspection_pchart_points_ts ON inspection_pchart_points (station, ts);
COMMENT ON TABLE inspection_pchart_points IS 'Closed p-chart subgroups per station: n, NG, p, limits and broken rules';

GRANT SELECT ON inspection_pchart, inspection_pchart_points TO shopfloor_reader;

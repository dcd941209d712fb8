-- SPC: specification limits per tag (for capability) and control limits frozen from a baseline period.
-- A chart of a tag uses its frozen limits until they are recomputed (POST /api/v1/spc/{tag}/limits);
-- without them it estimates limits from the data it charts.

CREATE TABLE spec_limits (
    tag_id     integer PRIMARY KEY REFERENCES tags (id),
    lsl        double precision,
    usl        double precision,
    target     double precision,
    updated_at timestamptz NOT NULL DEFAULT now(),
    CHECK (lsl IS NOT NULL OR usl IS NOT NULL),
    CHECK (lsl IS NULL OR usl IS NULL OR lsl < usl)
);
COMMENT ON TABLE spec_limits IS 'Specification limits of a tag: capability (Cp, Cpk, Pp, Ppk) is computed against them';

CREATE TABLE control_limits (
    tag_id         integer NOT NULL REFERENCES tags (id),
    chart          text NOT NULL CHECK (chart IN ('xbar_r', 'xbar_s', 'imr', 'p', 'np', 'c', 'u', 'ewma', 'cusum')),
    subgroup       text NOT NULL,  -- as asked for: a count ('5') or a time bucket ('1m')
    baseline_start timestamptz NOT NULL,
    baseline_end   timestamptz NOT NULL CHECK (baseline_end > baseline_start),
    cl             double precision NOT NULL,
    ucl            double precision,  -- NULL where the limits vary with the subgroup size
    lcl            double precision,
    sigma          double precision NOT NULL CHECK (sigma > 0),
    params         jsonb NOT NULL DEFAULT '{}',
    computed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tag_id, chart)
);
COMMENT ON TABLE control_limits IS 'Control limits frozen from a baseline period; params.centre and sigma regenerate them at any subgroup size';
COMMENT ON COLUMN control_limits.sigma IS 'Process sigma: of one measurement within subgroups, of one unit (p, np, u), of one count (c)';

CREATE VIEW control_limits_named AS
SELECT t.name AS tag, c.chart, c.subgroup, c.baseline_start, c.baseline_end, c.cl, c.ucl, c.lcl, c.sigma,
       c.params, c.computed_at
FROM control_limits c JOIN tags t ON t.id = c.tag_id;

GRANT SELECT ON spec_limits, control_limits, control_limits_named TO shopfloor_reader;

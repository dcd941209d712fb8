-- Which rules a station's p-chart judges with: 'we' (Western Electric 1-4, the default), 'nelson' (1-8) or 'all'.
-- On attribute data with few NG per subgroup the zone rules fire on in-control runs: simulated binomial subgroups at
-- p̄ = 0.1, n = 25 raised 9.3 alarms per 1000 subgroups with all twelve rules and 3.2 with Western Electric's four
-- (`python -m bench.pchart`, inspection/README.md), so a station judges with the four unless told otherwise.

ALTER TABLE inspection_stations
    ADD COLUMN pchart_rules text NOT NULL DEFAULT 'we' CHECK (pchart_rules IN ('we', 'nelson', 'all'));
COMMENT ON COLUMN inspection_stations.pchart_rules IS 'Rules of the station''s p-chart: we (WE1-4), nelson (N1-8) or all';

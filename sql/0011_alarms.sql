-- Alarms as ISA-18.2 / IEC 62682 describe them: one alarm per (machine, signal, rule) from the point
-- that raised it until it clears (was a row per point), with a priority, its acknowledgement, shelving
-- and suppression, and a journal with every transition (the twin's and the operators').
-- State (alarms_named.state): shelved > suppressed (by design: the machine does not produce) >
-- unack_active / ack_active / unack_cleared / normal (cleared and acknowledged).

DROP VIEW alarms_named;

ALTER TABLE alarms
    ALTER COLUMN tag_id DROP NOT NULL,  -- a machine's flood alarm has no signal
    ADD COLUMN rule text NOT NULL DEFAULT 'spc' CHECK (rule IN ('spc', 'bad_input', 'flood')),
    ADD COLUMN priority text NOT NULL DEFAULT 'low' CHECK (priority IN ('low', 'medium', 'high')),
    ADD COLUMN active boolean NOT NULL DEFAULT false,
    ADD COLUMN suppressed boolean NOT NULL DEFAULT false,
    ADD COLUMN last_ts timestamptz,
    ADD COLUMN cleared_ts timestamptz,
    ADD COLUMN points integer NOT NULL DEFAULT 1 CHECK (points >= 1),
    ADD COLUMN acked_at timestamptz,
    ADD COLUMN acked_by text,
    ADD COLUMN shelved_until timestamptz,
    ADD COLUMN shelved_by text;

-- the rows of the point-per-row era are history: cleared at their point, acknowledged by this migration
UPDATE alarms SET last_ts = ts, cleared_ts = ts, acked_at = raised_at, acked_by = 'migration 0011';
ALTER TABLE alarms ALTER COLUMN last_ts SET NOT NULL, ALTER COLUMN active SET DEFAULT true;
CREATE UNIQUE INDEX alarms_one_active ON alarms (machine_id, coalesce(tag_id, 0), rule) WHERE active;
CREATE INDEX alarms_open ON alarms (machine_id) WHERE active OR acked_at IS NULL;
COMMENT ON TABLE alarms IS 'One alarm per (machine, signal, rule) from raise to clear: spc (Western Electric, Nelson, EWMA, CUSUM), bad_input (stale or bad quality), flood (> 10 raised in 10 min); times ts/last_ts/cleared_ts are data times';

CREATE TABLE alarm_journal (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    alarm_id   bigint NOT NULL REFERENCES alarms (id),
    at         timestamptz NOT NULL DEFAULT now(),
    data_ts    timestamptz,             -- the sample time of a twin transition
    transition text NOT NULL CHECK (transition IN ('raised', 'escalated', 'cleared', 'suppressed', 'released',
                                                   'acknowledged', 'shelved', 'unshelved')),
    actor      text NOT NULL,           -- 'twin', or the API user who acted
    role       text,
    outcome    text NOT NULL DEFAULT 'accepted' CHECK (outcome IN ('accepted', 'refused')),
    detail     text NOT NULL DEFAULT ''
);
CREATE INDEX alarm_journal_alarm ON alarm_journal (alarm_id, id);
CREATE INDEX alarm_journal_at ON alarm_journal (at);
COMMENT ON TABLE alarm_journal IS 'Every transition of every alarm: the twin''s (raised, escalated, cleared, suppressed, released) and the operators'' (acknowledged, shelved, unshelved, with who, when and the outcome)';

CREATE VIEW alarms_named AS
SELECT a.id, m.name AS machine, t.name AS tag, a.rule, a.priority,
       CASE WHEN a.shelved_until > now() THEN 'shelved'
            WHEN a.suppressed AND a.active THEN 'suppressed'
            WHEN a.active AND a.acked_at IS NULL THEN 'unack_active'
            WHEN a.active THEN 'ack_active'
            WHEN a.acked_at IS NULL THEN 'unack_cleared'
            ELSE 'normal' END AS state,
       a.active, a.acked_at IS NOT NULL AS acknowledged, a.ts, a.last_ts, a.cleared_ts, a.points, a.rules, a.value,
       a.raised_at, a.acked_at, a.acked_by, a.shelved_until, a.shelved_by
FROM alarms a JOIN machines m ON m.id = a.machine_id LEFT JOIN tags t ON t.id = a.tag_id;

CREATE VIEW alarm_journal_named AS
SELECT j.id, j.alarm_id, m.name AS machine, t.name AS tag, a.rule, j.at, j.data_ts, j.transition, j.actor, j.role,
       j.outcome, j.detail
FROM alarm_journal j JOIN alarms a ON a.id = j.alarm_id JOIN machines m ON m.id = a.machine_id
LEFT JOIN tags t ON t.id = a.tag_id;

GRANT SELECT ON alarms, alarm_journal, alarms_named, alarm_journal_named TO shopfloor_reader;

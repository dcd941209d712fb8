-- OPC UA Alarms & Conditions in the twin's alarm list and journal.
-- The gateway stores every OPC UA event as a JSON text value of its notifier's events tag (the
-- events table, through the spool like any reading). A condition event (one with ConditionName and
-- ActiveState) is also turned, here, into the alarm of (machine, condition) with rule 'opcua' and
-- journal rows by actor 'opcua': raised, escalated, acknowledged (the server's AckedState) and cleared.
-- Done in the database so the gateway stays below the twin (it imports the historian only) and so a
-- replayed spool batch changes nothing: the trigger fires only for event rows actually inserted.

ALTER TABLE alarms DROP CONSTRAINT alarms_rule_check;
ALTER TABLE alarms ADD CONSTRAINT alarms_rule_check CHECK (rule IN ('spc', 'bad_input', 'flood', 'opcua'));
COMMENT ON COLUMN alarms.rule IS 'spc, bad_input, flood (the twin''s) or opcua (an OPC UA condition; its name in rules)';

-- ISA-18.2 priority of an OPC UA severity (1..1000) in three equal bands.
CREATE FUNCTION sf_opcua_priority(severity double precision) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CASE WHEN severity >= 667 THEN 'high' WHEN severity >= 334 THEN 'medium' ELSE 'low' END $$;

CREATE FUNCTION sf_opcua_condition() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    j jsonb;
    ev tags%ROWTYPE;
    m integer;
    ct integer;
    cname text;
    active boolean;
    acked boolean;
    sev double precision;
    prio text;
    a alarms%ROWTYPE;
    msg text;
BEGIN
    BEGIN
        j := NEW.value::jsonb;
        IF jsonb_typeof(j) <> 'object' OR NOT (j ? 'ConditionName' AND j ? 'ActiveState') THEN
            RETURN NULL;
        END IF;
        SELECT * INTO ev FROM tags WHERE id = NEW.tag_id;
        cname := j->>'ConditionName';
        active := (j->>'ActiveState')::boolean;
        acked := coalesce((j->>'AckedState')::boolean, false);
        sev := coalesce((j->>'Severity')::double precision, 'NaN');
        prio := CASE WHEN sev = 'NaN' THEN 'low' ELSE sf_opcua_priority(sev) END;
        msg := coalesce(j->>'Message', '');
        m := coalesce(ev.machine_id, (SELECT id FROM machines WHERE name = j->>'SourceName'));
        IF m IS NULL OR cname IS NULL OR active IS NULL THEN
            INSERT INTO dead_letters (source, reason, payload)
            VALUES (ev.source,
                    CASE WHEN m IS NULL
                         THEN format('%s: OPC UA condition %L has no machine (set machine on the notifier, or name a '
                                     'machine as its SourceName %L)', ev.name, cname, j->>'SourceName')
                         ELSE format('%s: OPC UA condition without ConditionName or ActiveState', ev.name) END,
                    jsonb_build_object('tag', ev.name, 'ts', NEW.ts, 'event', j))
            ON CONFLICT DO NOTHING;
            RETURN NULL;
        END IF;
        -- one tag per condition gives each its own (machine, tag, 'opcua') alarm under the twin's
        -- one-active-alarm index; it holds no data, it names the condition in alarms_named.tag
        INSERT INTO tags (name, category, machine_id, data_type, source, description)
        VALUES (ev.name || '/' || coalesce(j->>'SourceName', '') || '/' || cname, 'machine', m, 'text', ev.source,
                format('OPC UA condition %s of %s (events in %s)', cname, coalesce(j->>'SourceName', '?'), ev.name))
        ON CONFLICT (name) DO NOTHING;
        SELECT id INTO ct FROM tags WHERE name = ev.name || '/' || coalesce(j->>'SourceName', '') || '/' || cname;

        SELECT * INTO a FROM alarms WHERE machine_id = m AND tag_id = ct AND rule = 'opcua' AND alarms.active FOR UPDATE;
        IF active THEN
            IF a.id IS NULL THEN
                INSERT INTO alarms (machine_id, tag_id, rule, ts, last_ts, rules, value, priority, active, acked_at, acked_by)
                VALUES (m, ct, 'opcua', NEW.ts, NEW.ts, ARRAY[cname], sev, prio, true,
                        CASE WHEN acked THEN NEW.ts END, CASE WHEN acked THEN 'opcua' END)
                RETURNING * INTO a;
                INSERT INTO alarm_journal (alarm_id, data_ts, transition, actor, detail)
                VALUES (a.id, NEW.ts, 'raised', 'opcua', prio || ': ' || msg);
                IF acked THEN
                    INSERT INTO alarm_journal (alarm_id, data_ts, transition, actor, detail)
                    VALUES (a.id, NEW.ts, 'acknowledged', 'opcua', 'acknowledged on the OPC UA server');
                END IF;
                RETURN NULL;
            END IF;
            UPDATE alarms SET last_ts = greatest(last_ts, NEW.ts), points = points + 1, value = sev,
                              priority = CASE WHEN array_position(ARRAY['low', 'medium', 'high'], prio)
                                                   > array_position(ARRAY['low', 'medium', 'high'], priority)
                                              THEN prio ELSE priority END
             WHERE id = a.id;
            IF array_position(ARRAY['low', 'medium', 'high'], prio) > array_position(ARRAY['low', 'medium', 'high'], a.priority) THEN
                INSERT INTO alarm_journal (alarm_id, data_ts, transition, actor, detail)
                VALUES (a.id, NEW.ts, 'escalated', 'opcua', prio || ': ' || msg);
            END IF;
        ELSIF a.id IS NOT NULL THEN
            UPDATE alarms SET active = false, cleared_ts = NEW.ts, last_ts = greatest(last_ts, NEW.ts) WHERE id = a.id;
            INSERT INTO alarm_journal (alarm_id, data_ts, transition, actor, detail)
            VALUES (a.id, NEW.ts, 'cleared', 'opcua', msg);
        ELSE
            -- inactive and none active: an acknowledgement of the latest cleared one, if any
            SELECT * INTO a FROM alarms WHERE machine_id = m AND tag_id = ct AND rule = 'opcua'
             ORDER BY id DESC LIMIT 1 FOR UPDATE;
        END IF;
        IF acked AND a.id IS NOT NULL AND a.acked_at IS NULL THEN
            UPDATE alarms SET acked_at = NEW.ts, acked_by = 'opcua' WHERE id = a.id;
            INSERT INTO alarm_journal (alarm_id, data_ts, transition, actor, detail)
            VALUES (a.id, NEW.ts, 'acknowledged', 'opcua', 'acknowledged on the OPC UA server');
        END IF;
    EXCEPTION WHEN OTHERS THEN
        -- never fail the historian's insert (the spool would retry it forever): the reason is kept instead
        INSERT INTO dead_letters (source, reason, payload)
        VALUES (coalesce(ev.source, ''), format('OPC UA condition event not applied to alarms: %s', SQLERRM),
                jsonb_build_object('tag_id', NEW.tag_id, 'ts', NEW.ts, 'value', NEW.value))
        ON CONFLICT DO NOTHING;
    END;
    RETURN NULL;
END $$;
COMMENT ON FUNCTION sf_opcua_condition() IS
    'An inserted OPC UA condition event (JSON with ConditionName and ActiveState) becomes alarm transitions, rule opcua';

-- the WHEN clause keeps the cost off every other text event (states, lots, badges)
CREATE TRIGGER events_opcua_condition AFTER INSERT ON events
    FOR EACH ROW WHEN (NEW.value LIKE '{%"ConditionName"%') EXECUTE FUNCTION sf_opcua_condition();

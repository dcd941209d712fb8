-- Command center: people who sign in to the web pages (argon2id passwords, lockout), their sessions,
-- and the event log behind GET /api/v1/stream (machine states, alarm transitions, inspections, schedule versions).

CREATE TABLE IF NOT EXISTS web_users (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    role          text NOT NULL CHECK (role IN ('viewer', 'operator', 'engineer', 'admin')),
    password_hash text NOT NULL CHECK (password_hash LIKE '$argon2id$%'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    disabled_at   timestamptz,
    failures      integer NOT NULL DEFAULT 0,    -- failed sign-ins in a row
    locked_until  timestamptz,                   -- set after too many failures in a row
    last_login_at timestamptz
);
COMMENT ON TABLE web_users IS 'People who sign in to the command center: argon2id password hash (never the password), role, lockout';

CREATE TABLE IF NOT EXISTS web_sessions (
    token_sha256 bytea PRIMARY KEY,              -- sha256 of the cookie value; the value itself is never stored
    user_id      bigint NOT NULL REFERENCES web_users (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz                     -- signed out
);
CREATE INDEX IF NOT EXISTS web_sessions_user ON web_sessions (user_id);
COMMENT ON TABLE web_sessions IS 'Signed-in browser sessions: a session ends at sign-out, expiry, or when its user is disabled';

-- The stream's log. Rows are read in (xid, id) order, and only rows of transactions older than every
-- running one (xid < pg_snapshot_xmin): such rows can no longer appear before a row already read, so a
-- reader that resumes after (xid, id) misses nothing, whatever order concurrent writers commit in.
CREATE TABLE IF NOT EXISTS stream_events (
    id   bigint GENERATED ALWAYS AS IDENTITY,
    xid  xid8 NOT NULL DEFAULT pg_current_xact_id(),
    at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    kind text NOT NULL CHECK (kind IN ('machine', 'alarm', 'inspection', 'schedule')),
    body jsonb NOT NULL,
    PRIMARY KEY (xid, id)
);
CREATE INDEX IF NOT EXISTS stream_events_at ON stream_events (at);
COMMENT ON TABLE stream_events IS 'What GET /api/v1/stream publishes, kept for an hour so reconnecting clients resume from Last-Event-ID';

CREATE OR REPLACE FUNCTION sf_stream_emit(k text, b jsonb) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO stream_events (kind, body) VALUES (k, b);
    PERFORM pg_notify('shopfloor_stream', '');  -- one notification per transaction: readers then read the log
END $$;

-- machine_status is rewritten on every twin step: publish a state change at once, changed counts at most every 5 s
ALTER TABLE machine_status ADD COLUMN IF NOT EXISTS streamed_at timestamptz;

CREATE OR REPLACE FUNCTION sf_stream_machine_due() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.state IS DISTINCT FROM OLD.state
       OR ((NEW.good_total, NEW.scrap_total) IS DISTINCT FROM (OLD.good_total, OLD.scrap_total)
           AND (OLD.streamed_at IS NULL OR now() - OLD.streamed_at >= interval '5 seconds')) THEN
        NEW.streamed_at := now();
    END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION sf_stream_machine() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' OR NEW.streamed_at IS DISTINCT FROM OLD.streamed_at THEN
        PERFORM sf_stream_emit('machine', jsonb_build_object(
            'machine', (SELECT name FROM machines WHERE id = NEW.machine_id),
            'state', NEW.state, 'since', NEW.state_since,
            'changed', CASE WHEN TG_OP = 'INSERT' OR NEW.state IS DISTINCT FROM OLD.state THEN 'state' ELSE 'counts' END,
            'good_total', NEW.good_total, 'scrap_total', NEW.scrap_total));
    END IF;
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sf_stream_alarm() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sf_stream_emit('alarm', (
        SELECT jsonb_build_object('alarm', a.id, 'machine', a.machine, 'tag', a.tag, 'rule', a.rule,
                                  'priority', a.priority, 'state', a.state, 'transition', NEW.transition,
                                  'actor', NEW.actor, 'outcome', NEW.outcome, 'journal', NEW.id)
        FROM alarms_named a WHERE a.id = NEW.alarm_id));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sf_stream_inspection() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sf_stream_emit('inspection', jsonb_build_object(
        'inspection', NEW.id, 'ts', NEW.ts, 'station', NEW.station, 'machine', NEW.machine, 'lot', NEW.lot,
        'verdict', NEW.verdict, 'class', NEW.class, 'score', NEW.score));
    RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION sf_stream_schedule() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM sf_stream_emit('schedule', jsonb_build_object(
        'schedule', NEW.schedule_id, 'version', NEW.version, 'cause', NEW.cause -> 'kind', 'status', NEW.status,
        'makespan_s', NEW.makespan_s));
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS stream_machine_due ON machine_status;
CREATE TRIGGER stream_machine_due BEFORE UPDATE ON machine_status
    FOR EACH ROW EXECUTE FUNCTION sf_stream_machine_due();
DROP TRIGGER IF EXISTS stream_machine ON machine_status;
CREATE TRIGGER stream_machine AFTER INSERT OR UPDATE ON machine_status
    FOR EACH ROW EXECUTE FUNCTION sf_stream_machine();
DROP TRIGGER IF EXISTS stream_alarm ON alarm_journal;
CREATE TRIGGER stream_alarm AFTER INSERT ON alarm_journal
    FOR EACH ROW EXECUTE FUNCTION sf_stream_alarm();
DROP TRIGGER IF EXISTS stream_inspection ON inspections;
CREATE TRIGGER stream_inspection AFTER INSERT ON inspections
    FOR EACH ROW EXECUTE FUNCTION sf_stream_inspection();
DROP TRIGGER IF EXISTS stream_schedule ON schedule_versions;
CREATE TRIGGER stream_schedule AFTER INSERT ON schedule_versions
    FOR EACH ROW EXECUTE FUNCTION sf_stream_schedule();

GRANT SELECT ON stream_events TO shopfloor_reader;

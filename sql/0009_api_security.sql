-- API security: keys stored as argon2id hashes (never the key), and an audit of every change asked of the API.

CREATE TABLE api_keys (
    id           bigserial PRIMARY KEY,
    name         text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'engineer', 'admin')),
    key_hash     text NOT NULL,  -- argon2id of the whole key; the key is shown once at creation
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz,
    revoked_at   timestamptz,
    last_used_at timestamptz
);
CREATE UNIQUE INDEX api_keys_active_name ON api_keys (name) WHERE revoked_at IS NULL;
COMMENT ON TABLE api_keys IS 'API keys: a key reads sf_<id>_<secret>; revoked or expired keys stop working within seconds';

CREATE TABLE api_audit (
    id         bigserial PRIMARY KEY,
    ts         timestamptz NOT NULL DEFAULT now(),
    who        text NOT NULL,          -- the key's user name, or 'anonymous' / 'unknown key'
    role       text,
    method     text NOT NULL,
    path       text NOT NULL,          -- the path asked for
    route      text,                   -- its route template, when one matched
    status     integer NOT NULL,       -- the HTTP status answered
    outcome    text NOT NULL CHECK (outcome IN ('accepted', 'refused', 'failed')),
    request_id text NOT NULL,
    detail     text NOT NULL DEFAULT ''
);
CREATE INDEX api_audit_ts ON api_audit (ts);
COMMENT ON TABLE api_audit IS 'Every change asked of the API (any method but GET/HEAD/OPTIONS), accepted or refused, with who and when';

-- Users, first-user setup marker, audit log and SQL-backed sessions.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    email_lower   TEXT NOT NULL UNIQUE,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'user')),
    disabled      BIGINT NOT NULL DEFAULT 0,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

CREATE TABLE setup_state (
    id         BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    done_at    BIGINT NOT NULL
);

CREATE TABLE audit_events (
    instance   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    id         TEXT NOT NULL UNIQUE,
    ts_micros  BIGINT NOT NULL,
    event      TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    user_id    TEXT,
    ip         TEXT,
    body       TEXT NOT NULL,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL,
    PRIMARY KEY (instance, seq)
);
CREATE INDEX audit_events_ts ON audit_events (ts_micros, instance, seq);

CREATE TABLE audit_anchors (
    instance   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    body       TEXT NOT NULL,
    PRIMARY KEY (instance, seq)
);

-- The audit log is append-only. Pruning (a deliberate, checkpointed operation) must set
-- rampart.audit_prune = 'on' for its own transaction; nothing else may update or delete.
CREATE FUNCTION rampart_audit_append_only() RETURNS trigger AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_setting('rampart.audit_prune', true) = 'on' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION rampart_audit_append_only();

CREATE TABLE sessions (
    store_key           TEXT PRIMARY KEY NOT NULL,
    user_id             TEXT NOT NULL,
    handle              TEXT NOT NULL,
    sealed              BYTEA NOT NULL,
    last_seen_at        BIGINT NOT NULL,
    expires_at          BIGINT NOT NULL
);
CREATE INDEX sessions_user ON sessions (user_id);
CREATE INDEX sessions_expires ON sessions (expires_at);

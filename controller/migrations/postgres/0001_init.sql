-- Slipway controller schema v1 (PostgreSQL). Releases, signatures and the audit log are
-- append-only. Times are unix milliseconds, as in the SQLite schema.

CREATE TABLE app_specs (
    name        TEXT   NOT NULL,
    version     BIGINT NOT NULL,
    spec        TEXT   NOT NULL,            -- AppSpec as JSON
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (name, version)
);

CREATE TABLE releases (
    app          TEXT   NOT NULL,
    seq          BIGINT NOT NULL,
    image        TEXT   NOT NULL,           -- repository@sha256:...
    requested    TEXT   NOT NULL,           -- what the operator typed
    spec_version BIGINT NOT NULL,
    rollback_of  BIGINT,
    created_by   TEXT   NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (app, seq)
);

CREATE FUNCTION slipway_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
END;
$$;

CREATE TRIGGER releases_append_only BEFORE UPDATE OR DELETE ON releases
    FOR EACH ROW EXECUTE FUNCTION slipway_append_only();

CREATE TABLE signatures (
    id         BIGSERIAL PRIMARY KEY,
    app        TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    envelope   TEXT   NOT NULL,             -- signed envelope JSON
    expires    BIGINT NOT NULL,
    signed_at  BIGINT NOT NULL,
    FOREIGN KEY (app, seq) REFERENCES releases (app, seq)
);
CREATE INDEX signatures_release ON signatures (app, seq, id);

CREATE TABLE hosts (
    host          TEXT PRIMARY KEY,
    labels        TEXT   NOT NULL,          -- JSON object
    agent_version TEXT,
    registered_at BIGINT NOT NULL,
    last_seen     BIGINT NOT NULL
);

CREATE TABLE host_status (
    host       TEXT   NOT NULL,
    app        TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    image      TEXT,
    phase      TEXT   NOT NULL,             -- Phase as JSON
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (host, app)
);

CREATE TABLE status_events (
    id         BIGSERIAL PRIMARY KEY,
    host       TEXT   NOT NULL,
    app        TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    phase      TEXT   NOT NULL,
    at         BIGINT NOT NULL
);

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT   NOT NULL,             -- admin | read-only | agent
    host       TEXT,
    hash       TEXT   NOT NULL UNIQUE,      -- hex sha256 of the secret
    created_at BIGINT NOT NULL
);

CREATE TABLE audit (
    id      BIGSERIAL PRIMARY KEY,
    at      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    action  TEXT   NOT NULL,
    object  TEXT   NOT NULL,
    detail  TEXT   NOT NULL
);
CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit
    FOR EACH ROW EXECUTE FUNCTION slipway_append_only();

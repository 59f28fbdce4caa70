-- Slipway controller schema v1. Releases and signatures are append-only.

CREATE TABLE app_specs (
    name        TEXT    NOT NULL,
    version     INTEGER NOT NULL,
    spec        TEXT    NOT NULL,           -- AppSpec as JSON
    created_at  INTEGER NOT NULL,           -- unix ms
    PRIMARY KEY (name, version)
);

CREATE TABLE releases (
    app          TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    image        TEXT    NOT NULL,          -- repository@sha256:...
    requested    TEXT    NOT NULL,          -- what the operator typed
    spec_version INTEGER NOT NULL,
    rollback_of  INTEGER,
    created_by   TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (app, seq)
);

CREATE TRIGGER releases_append_only_update BEFORE UPDATE ON releases
BEGIN SELECT RAISE(ABORT, 'releases are append-only'); END;
CREATE TRIGGER releases_append_only_delete BEFORE DELETE ON releases
BEGIN SELECT RAISE(ABORT, 'releases are append-only'); END;

CREATE TABLE signatures (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    app        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    envelope   TEXT    NOT NULL,            -- signed envelope JSON
    expires    INTEGER NOT NULL,
    signed_at  INTEGER NOT NULL,
    FOREIGN KEY (app, seq) REFERENCES releases (app, seq)
);
CREATE INDEX signatures_release ON signatures (app, seq, id);

CREATE TABLE hosts (
    host          TEXT PRIMARY KEY,
    labels        TEXT    NOT NULL,         -- JSON object
    agent_version TEXT,
    registered_at INTEGER NOT NULL,
    last_seen     INTEGER NOT NULL
);

CREATE TABLE host_status (
    host       TEXT    NOT NULL,
    app        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    image      TEXT,
    phase      TEXT    NOT NULL,            -- Phase as JSON
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (host, app)
);

CREATE TABLE status_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    host       TEXT    NOT NULL,
    app        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    phase      TEXT    NOT NULL,
    at         INTEGER NOT NULL
);

CREATE TABLE tokens (
    name       TEXT PRIMARY KEY,
    role       TEXT    NOT NULL,            -- admin | read-only | agent
    host       TEXT,
    hash       TEXT    NOT NULL UNIQUE,     -- hex sha256 of the secret
    created_at INTEGER NOT NULL
);

CREATE TABLE audit (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    object  TEXT    NOT NULL,
    detail  TEXT    NOT NULL
);
CREATE TRIGGER audit_append_only_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_append_only_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

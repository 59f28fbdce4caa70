-- Slipway controller schema v6: host lifecycle and join tokens. An operator cordons a host
-- (no new releases), drains it (nothing runs there) or removes it; the lead marks a host
-- that went silent as down. Join tokens let a new VM register itself with the labels they
-- grant; such a host's labels are then the controller's, not the agent's.

ALTER TABLE hosts ADD COLUMN lifecycle TEXT NOT NULL DEFAULT 'active';  -- active | cordoned | drained
ALTER TABLE hosts ADD COLUMN down_at BIGINT;                               -- unix ms marked down; NULL once heard from
ALTER TABLE hosts ADD COLUMN labels_managed BIGINT NOT NULL DEFAULT 0;     -- 1: labels set by a join token or an admin

CREATE TABLE join_tokens (
    name       TEXT PRIMARY KEY,
    hash       TEXT    NOT NULL UNIQUE,       -- hex sha256 of the secret
    labels     TEXT    NOT NULL,              -- JSON object: the labels a joining host gets
    uses       BIGINT NOT NULL,                 -- how many hosts may join with it
    used       BIGINT NOT NULL DEFAULT 0,
    expires_at BIGINT NOT NULL,                 -- unix ms
    created_by TEXT    NOT NULL,
    created_at BIGINT NOT NULL
);

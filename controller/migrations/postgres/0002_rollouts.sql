-- Slipway controller schema v2 (PostgreSQL): one rollout document per release.

CREATE TABLE rollouts (
    app        TEXT   NOT NULL,
    seq        BIGINT NOT NULL,
    rev        BIGINT NOT NULL,             -- bumped on every write (compare-and-set)
    doc        TEXT   NOT NULL,             -- rollout::Rollout as JSON
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (app, seq)
);

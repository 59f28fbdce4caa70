-- Slipway controller schema v2: one rollout document per release (waves, progress, failures).

CREATE TABLE rollouts (
    app        TEXT    NOT NULL,
    seq        INTEGER NOT NULL,
    rev        INTEGER NOT NULL,            -- bumped on every write (compare-and-set)
    doc        TEXT    NOT NULL,            -- rollout::Rollout as JSON
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (app, seq)
);

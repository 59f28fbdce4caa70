-- Slipway controller schema v4: the event log behind `GET /v1/events` (pruned by age and count).

CREATE TABLE events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,  -- `since=` resumes after it; never reused
    at     INTEGER NOT NULL,
    kind   TEXT    NOT NULL,                   -- release.created, wave.started, host.phase, ...
    app    TEXT,                               -- NULL for fleet events (host.joined)
    detail TEXT    NOT NULL                    -- JSON object
);
CREATE INDEX events_at ON events (at);

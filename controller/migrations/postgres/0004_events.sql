-- Slipway controller schema v4 (PostgreSQL): the event log behind `GET /v1/events`.

CREATE TABLE events (
    id     BIGSERIAL PRIMARY KEY,              -- `since=` resumes after it
    at     BIGINT NOT NULL,
    kind   TEXT   NOT NULL,
    app    TEXT,                               -- NULL for fleet events (host.joined)
    detail TEXT   NOT NULL                     -- JSON object
);
CREATE INDEX events_at ON events (at);

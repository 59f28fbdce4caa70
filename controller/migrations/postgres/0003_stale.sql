-- Slipway controller schema v3 (PostgreSQL): a host serving a release past its signature's
-- expiry says so.

ALTER TABLE host_status ADD COLUMN expired_at TEXT;  -- RFC 3339, set only while stale

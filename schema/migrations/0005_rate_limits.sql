-- Attempt counters of the login and signup limits (services::ratelimit::hit_counted): one
-- row per scope, counted by a single upsert that returns the new count, so concurrent
-- attempts never read the same count. Rows of ended windows are swept now and then.
CREATE TABLE rate_limits (
  scope TEXT PRIMARY KEY,
  window_no INTEGER NOT NULL,
  count INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
);
CREATE INDEX rate_limits_expires ON rate_limits(expires_at);

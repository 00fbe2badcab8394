-- Failed logins per account (services::ratelimit::claim_login): one row per email, claimed
-- by a single upsert per attempt, so concurrent attempts never pass on the same state. Past
-- the free failures each attempt waits an exponentially growing delay (`next_at`, Unix ms)
-- instead of a lockout; `granted` says whether the latest claim was let through. A success
-- deletes the row; rows whose `expires_at` passed are forgotten and swept now and then.
CREATE TABLE login_failures (
  scope TEXT PRIMARY KEY,
  failures INTEGER NOT NULL,
  next_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  granted INTEGER NOT NULL
);
CREATE INDEX login_failures_expires ON login_failures(expires_at);

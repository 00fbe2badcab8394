-- Finished viewer sessions are swept in batches (Job::SweepViewSessions); the sweep finds the
-- oldest rows through this index instead of scanning the table.
CREATE INDEX view_sessions_started ON view_sessions(started_at);

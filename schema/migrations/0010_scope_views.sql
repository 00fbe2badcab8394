-- Views counted per channel (live joins) and per video (plays), beside the global counters
-- (services::views): a view that opens a counted session adds one here too, in the same
-- batch. A video's view count is read from here, so it no longer shrinks when the sweep
-- deletes the sessions that counted it. Existing sessions seed it.
CREATE TABLE scope_views (
  scope TEXT PRIMARY KEY,
  views INTEGER NOT NULL
);
INSERT INTO scope_views (scope, views) SELECT scope, COUNT(*) FROM view_sessions GROUP BY scope;

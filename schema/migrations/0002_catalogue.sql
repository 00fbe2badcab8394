-- Catalogue additions: viewer sessions (views counted once per viewer session) and an index
-- for the newest-first listing of every video (admins, owners, free-text search).

-- One row per (what is watched, who watches): `scope` is a channel id (live) or a video id
-- (on demand); `viewer` is a user id or an anonymous viewer cookie. A view is counted when
-- the row is created or when the previous session is older than the session length.
CREATE TABLE view_sessions (
    scope      TEXT NOT NULL,
    viewer     TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    PRIMARY KEY (scope, viewer)
);

CREATE INDEX videos_created ON videos(created_at, id);
CREATE INDEX videos_owner_created ON videos(owner_id, created_at, id);
CREATE INDEX channels_created ON channels(created_at, id);

-- edgevideo catalogue, first schema. Shared by D1 (wrangler d1 migrations apply) and Spin SQLite.
-- Times are Unix milliseconds (INTEGER); ids are opaque text; JSON columns hold JSON text.

CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,          -- normalised (trimmed, lower-case)
    password_hash TEXT NOT NULL,                 -- PBKDF2-HMAC-SHA256: iterations$salt$hash
    role          TEXT NOT NULL DEFAULT 'viewer' CHECK (role IN ('viewer', 'broadcaster', 'developer', 'admin')),
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    stream_key_version INTEGER NOT NULL DEFAULT 1, -- bumped on rotation; ingest tokens carry it
    created_at  INTEGER NOT NULL
);
CREATE INDEX channels_owner ON channels(owner_id);

CREATE TABLE broadcasts (
    id             TEXT PRIMARY KEY,
    channel_id     TEXT NOT NULL REFERENCES channels(id),
    status         TEXT NOT NULL CHECK (status IN ('live', 'ended')),
    started_at     INTEGER NOT NULL,
    ended_at       INTEGER,
    end_reason     TEXT,                          -- 'endlist', 'timeout', 'replaced'
    segment_count  INTEGER NOT NULL DEFAULT 0,
    duration_ms    INTEGER NOT NULL DEFAULT 0,
    segments       TEXT NOT NULL DEFAULT '[]'     -- JSON: [{seq, file, duration_ms, size, program_date_ms}]
);
CREATE INDEX broadcasts_channel ON broadcasts(channel_id, started_at);

CREATE TABLE videos (
    id            TEXT PRIMARY KEY,
    channel_id    TEXT NOT NULL REFERENCES channels(id),
    broadcast_id  TEXT REFERENCES broadcasts(id),
    owner_id      TEXT NOT NULL REFERENCES users(id),
    status        TEXT NOT NULL CHECK (status IN ('processing', 'ready', 'published', 'rejected', 'failed')),
    visibility    TEXT NOT NULL DEFAULT 'public' CHECK (visibility IN ('public', 'private')),
    title         TEXT NOT NULL DEFAULT '',
    description   TEXT NOT NULL DEFAULT '',
    tags          TEXT NOT NULL DEFAULT '[]',     -- JSON array of strings
    metadata      TEXT NOT NULL DEFAULT '{}',     -- JSON object merged from plugins
    duration_ms   INTEGER,
    width         INTEGER,
    height        INTEGER,
    size_bytes    INTEGER,
    mp4_key       TEXT,
    poster_key    TEXT,
    reject_reason TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX videos_status_created ON videos(status, created_at, id);
CREATE INDEX videos_channel_created ON videos(channel_id, created_at, id);

CREATE TABLE video_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    video_id   TEXT NOT NULL REFERENCES videos(id),
    kind       TEXT NOT NULL,                     -- e.g. broadcast.ended, transcode.finished
    detail     TEXT NOT NULL DEFAULT '{}',        -- JSON
    created_at INTEGER NOT NULL
);
CREATE INDEX video_events_video ON video_events(video_id, id);

CREATE TABLE plugins (
    id          TEXT PRIMARY KEY,
    owner_id    TEXT NOT NULL REFERENCES users(id),
    name        TEXT NOT NULL,
    hook        TEXT NOT NULL,                    -- preValidate, postValidate, preMetadata, postMetadata, or an event name
    url         TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    enabled     INTEGER NOT NULL DEFAULT 1,
    secret      TEXT NOT NULL,                    -- whsec_... current signing secret
    previous_secret TEXT,                         -- still signs until previous_secret_until
    previous_secret_until INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    deleted_at  INTEGER,                          -- soft delete: tasks and deliveries keep their history
    UNIQUE (owner_id, name)
);
CREATE INDEX plugins_hook ON plugins(hook, enabled);

-- One plugin lifecycle per video: the hook it is at, and how it ended.
CREATE TABLE lifecycles (
    video_id    TEXT PRIMARY KEY REFERENCES videos(id),
    hook        TEXT NOT NULL DEFAULT 'start',    -- start, preValidate, postValidate, preMetadata, postMetadata, done
    status      TEXT NOT NULL CHECK (status IN ('running', 'completed', 'rejected')),
    claim       TEXT,                             -- who moved it to its hook (one mover wins)
    started_at  INTEGER NOT NULL,
    finished_at INTEGER
);

CREATE TABLE plugin_tasks (
    id          TEXT PRIMARY KEY,
    video_id    TEXT NOT NULL REFERENCES videos(id),
    plugin_id   TEXT NOT NULL REFERENCES plugins(id),
    hook        TEXT NOT NULL,
    token_hash  TEXT NOT NULL,                    -- SHA-256 of the single-use task token
    status      TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'timed_out')),
    result      TEXT,                             -- JSON
    error       TEXT,
    deadline_at INTEGER NOT NULL,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX plugin_tasks_video ON plugin_tasks(video_id, hook);
CREATE INDEX plugin_tasks_pending ON plugin_tasks(status, deadline_at);

CREATE TABLE webhook_deliveries (
    id          TEXT PRIMARY KEY,                 -- the webhook-id header; receivers dedupe on it
    plugin_id   TEXT NOT NULL REFERENCES plugins(id),
    event_type  TEXT NOT NULL,
    payload     TEXT NOT NULL,                    -- JSON body as sent
    status      TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
    last_error  TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);
CREATE INDEX webhook_deliveries_plugin ON webhook_deliveries(plugin_id, created_at);

CREATE TABLE webhook_attempts (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id   TEXT NOT NULL REFERENCES webhook_deliveries(id),
    attempt       INTEGER NOT NULL,
    response_status INTEGER,
    latency_ms    INTEGER,
    error         TEXT,
    created_at    INTEGER NOT NULL
);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts(delivery_id, attempt);

-- KPI counters (broadcasts, views, plugins added, per-hook success/failure, ...).
CREATE TABLE counters (
    name  TEXT PRIMARY KEY,
    value INTEGER NOT NULL DEFAULT 0
);

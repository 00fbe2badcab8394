-- Plugin scope (services::plugins): a plugin acts only on videos of channels its owner owns
-- (`own`, the default, and what every existing plugin becomes) unless its owner asked for
-- `all` and an admin approved it (`approved_at` set; cleared again by a revocation). A
-- plugin waiting for approval acts on its owner's channels only.
ALTER TABLE plugins ADD COLUMN scope TEXT NOT NULL DEFAULT 'own' CHECK (scope IN ('own', 'all'));
ALTER TABLE plugins ADD COLUMN approved_at INTEGER;
ALTER TABLE plugins ADD COLUMN approved_by TEXT;

-- Email verification (routes::auth): an account proves its address by a signed, single-use
-- link before it can sign in, and only then gets the role its address implies
-- (BROADCASTER_DOMAINS, ADMIN_EMAILS). Accounts from before this migration start unverified:
-- their next sign-in with the right password mails them a link. Their stored roles stay
-- (roles an admin granted are not undone); docs/SECURITY.md has the query that lists
-- unverified accounts holding more than the viewer role.
ALTER TABLE users ADD COLUMN email_verified_at INTEGER;

-- Marks the token that UBIOPS_BOOTSTRAP_TOKEN put in place, so that a server
-- started with a different value can revoke the old one instead of leaving
-- both valid. Tokens from before this migration are unmarked: a bootstrap
-- value rotated before it stays valid until revoked by hand
-- (`ubiops-server token list`, `token revoke`).
ALTER TABLE api_tokens ADD COLUMN bootstrap boolean NOT NULL DEFAULT false;

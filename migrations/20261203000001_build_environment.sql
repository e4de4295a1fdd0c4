-- The cache key of the Python environment a successful build made or used.
-- Environments live on the machine that built them; the key says which one
-- a revision runs in, so the cache never evicts one an active revision
-- uses, and another machine can make the same one from the same inputs.
ALTER TABLE builds ADD COLUMN environment text;

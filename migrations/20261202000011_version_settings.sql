-- The version settings that newer clients send besides those of API v2.1
-- (environment tag, scaling strategy, processes per instance, ports, health
-- check, command and arguments): one document read and written as one typed
-- value, whose every field has a default, so versions created before a
-- setting existed read as having its default.
ALTER TABLE versions ADD COLUMN runtime_settings jsonb NOT NULL DEFAULT '{}'
    CHECK (jsonb_typeof(runtime_settings) = 'object');

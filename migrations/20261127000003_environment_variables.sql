-- Environment variables at three scopes: project (deployment_id and
-- version_id NULL), deployment (version_id NULL) and version.

CREATE TABLE environment_variables (
    id              uuid PRIMARY KEY,
    project_id      uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id   uuid REFERENCES deployments (id) ON DELETE CASCADE,
    version_id      uuid REFERENCES versions (id) ON DELETE CASCADE,
    name            text NOT NULL,
    secret          boolean NOT NULL,
    -- The value of a non-secret variable. A secret's value is only ever
    -- stored sealed (AES-256-GCM), with the id of the key that sealed it.
    value           text,
    sealed_value    bytea,
    key_id          text,
    creation_date   timestamptz NOT NULL DEFAULT now(),
    last_updated    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT environment_variables_version_has_deployment
        CHECK (version_id IS NULL OR deployment_id IS NOT NULL),
    CONSTRAINT environment_variables_secret_is_sealed CHECK (
        (secret AND value IS NULL AND sealed_value IS NOT NULL AND key_id IS NOT NULL)
        OR (NOT secret AND value IS NOT NULL AND sealed_value IS NULL AND key_id IS NULL))
);

-- One name per scope. COALESCE instead of NULLS NOT DISTINCT keeps this
-- working on PostgreSQL before 15.
CREATE UNIQUE INDEX environment_variables_unique_name ON environment_variables (
    project_id,
    COALESCE(deployment_id, '00000000-0000-0000-0000-000000000000'),
    COALESCE(version_id, '00000000-0000-0000-0000-000000000000'),
    name
);

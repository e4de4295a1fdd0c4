-- Projects, API tokens, deployments and audit events.
-- Everything is keyed by UUID and refers by id, never by name, so renames keep
-- everything attached.

CREATE TABLE projects (
    id                uuid PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    organization_name text NOT NULL,
    creation_date     timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE api_tokens (
    id            uuid PRIMARY KEY,
    -- SHA-256 of the token; the token itself is never stored.
    token_hash    bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    email         text NOT NULL,
    -- NULL: every project. Otherwise the names of the only projects the token may touch.
    project_scope text[],
    created_at    timestamptz NOT NULL DEFAULT now(),
    revoked_at    timestamptz
);

CREATE TABLE deployments (
    id            uuid PRIMARY KEY,
    project_id    uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    name          text NOT NULL,
    description   text,
    input_type    text NOT NULL CHECK (input_type IN ('structured', 'plain')),
    output_type   text NOT NULL CHECK (output_type IN ('structured', 'plain')),
    input_fields  jsonb NOT NULL DEFAULT '[]',
    output_fields jsonb NOT NULL DEFAULT '[]',
    labels        jsonb NOT NULL DEFAULT '{}',
    creation_date timestamptz NOT NULL DEFAULT now(),
    last_updated  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT deployments_unique_name UNIQUE (project_id, name)
);

-- One table for the events of every kind of object. `deployment_id` is the
-- deployment whose audit list shows the event (versions, variables, revisions
-- and builds set it too); it has no foreign key because events outlive what
-- they describe.
CREATE TABLE audit_events (
    id            uuid PRIMARY KEY,
    seq           bigint GENERATED ALWAYS AS IDENTITY,
    project_id    uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id uuid,
    date          timestamptz NOT NULL DEFAULT clock_timestamp(),
    action        text NOT NULL CHECK (action IN ('create', 'update', 'delete', 'info')),
    user_email    text NOT NULL,
    event         text NOT NULL,
    object_type   text NOT NULL,
    object_id     uuid,
    object_name   text
);

CREATE INDEX audit_events_by_deployment ON audit_events (deployment_id, date DESC, seq DESC);
CREATE INDEX audit_events_by_project ON audit_events (project_id);

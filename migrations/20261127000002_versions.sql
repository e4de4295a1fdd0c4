-- Deployment versions, and the deployment's default version.

CREATE TABLE versions (
    id                           uuid PRIMARY KEY,
    deployment_id                uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    name                         text NOT NULL,
    description                  text,
    language                     text NOT NULL,
    instance_type                text NOT NULL,
    memory_allocation            integer NOT NULL,
    maximum_instances            integer NOT NULL,
    minimum_instances            integer NOT NULL CHECK (minimum_instances <= maximum_instances),
    maximum_idle_time            integer NOT NULL,
    labels                       jsonb NOT NULL DEFAULT '{}',
    monitoring                   text,
    default_notification_group   text,
    request_retention_time       integer NOT NULL,
    request_retention_mode       text NOT NULL CHECK (request_retention_mode IN ('none', 'metadata', 'full')),
    maximum_queue_size_express   integer NOT NULL,
    maximum_queue_size_batch     integer NOT NULL,
    static_ip                    boolean NOT NULL,
    restart_request_interruption boolean NOT NULL,
    -- Driven by builds: unavailable until one succeeds, building while the
    -- newest runs, available once any has succeeded.
    status                       text NOT NULL DEFAULT 'unavailable'
                                 CHECK (status IN ('unavailable', 'building', 'available')),
    active_revision_id           uuid,
    latest_build_id              uuid,
    last_file_upload             timestamptz,
    has_request_method           boolean NOT NULL DEFAULT false,
    has_requests_method          boolean NOT NULL DEFAULT false,
    creation_date                timestamptz NOT NULL DEFAULT now(),
    last_updated                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT versions_unique_name UNIQUE (deployment_id, name),
    CONSTRAINT versions_id_deployment UNIQUE (id, deployment_id)
);

-- The default version must be a version of this very deployment (the
-- composite key guarantees it); deleting it leaves the default empty.
ALTER TABLE deployments
    ADD COLUMN default_version_id uuid,
    ADD CONSTRAINT deployments_default_version
        FOREIGN KEY (default_version_id, id) REFERENCES versions (id, deployment_id)
        ON DELETE SET NULL (default_version_id);

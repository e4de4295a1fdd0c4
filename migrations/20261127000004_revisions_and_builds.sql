-- Deployment files (revisions), their builds, and the bookkeeping that keeps
-- object storage and the database in step.

CREATE TABLE revisions (
    id            uuid PRIMARY KEY,
    version_id    uuid NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    -- Object storage key: made of ids only, never of user-supplied names.
    object_key    text NOT NULL UNIQUE,
    file_name     text NOT NULL,
    size_bytes    bigint NOT NULL,
    created_by    text NOT NULL,
    creation_date timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX revisions_by_version ON revisions (version_id, creation_date);

CREATE TABLE builds (
    id                  uuid PRIMARY KEY,
    revision_id         uuid NOT NULL REFERENCES revisions (id) ON DELETE CASCADE,
    version_id          uuid NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    status              text NOT NULL DEFAULT 'queued'
                        CHECK (status IN ('queued', 'building', 'validating', 'success', 'failed', 'cancelled')),
    error_message       text,
    trigger             text NOT NULL,
    has_request_method  boolean NOT NULL DEFAULT false,
    has_requests_method boolean NOT NULL DEFAULT false,
    creation_date       timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- The worker holding the build and until when: a worker that dies stops
    -- renewing, and the build goes back to the queue when the lease expires.
    worker_id           text,
    lease_expires_at    timestamptz,
    attempts            integer NOT NULL DEFAULT 0
);
CREATE INDEX builds_by_version ON builds (version_id, creation_date);
CREATE INDEX builds_by_revision ON builds (revision_id, creation_date);
CREATE INDEX builds_to_claim ON builds (creation_date) WHERE status IN ('queued', 'building', 'validating');

-- An upload being streamed to object storage. If the server dies mid-way the
-- lease runs out and the sweep deletes the partial object and this row.
CREATE TABLE pending_uploads (
    object_key       text PRIMARY KEY,
    lease_expires_at timestamptz NOT NULL
);

-- Objects whose database rows are gone: deleted after the commit, retried by
-- the sweep until object storage confirms.
CREATE TABLE object_deletions (
    object_key text PRIMARY KEY,
    queued_at  timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE versions
    ADD CONSTRAINT versions_active_revision
        FOREIGN KEY (active_revision_id) REFERENCES revisions (id) ON DELETE SET NULL,
    ADD CONSTRAINT versions_latest_build
        FOREIGN KEY (latest_build_id) REFERENCES builds (id) ON DELETE SET NULL;

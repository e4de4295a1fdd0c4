-- Requests to deployment versions. Direct requests are written once, when
-- they have finished; batch requests (a durable queue) will be written when
-- created and move `pending -> processing -> completed | failed`, or to
-- `cancelled` (through `cancelled_pending` while a worker still holds one).
-- One table for both, so that get, list and delete treat them alike.
CREATE TABLE deployment_requests (
    id                 uuid PRIMARY KEY,
    -- Kept beside the version so that a project's list needs no join to
    -- filter; deleting a project, deployment or version takes its requests.
    project_id         uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    deployment_id      uuid NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    version_id         uuid NOT NULL REFERENCES versions (id) ON DELETE CASCADE,
    batch              boolean NOT NULL,
    status             text NOT NULL
                       CHECK (status IN ('pending', 'processing', 'completed', 'failed',
                                         'cancelled', 'cancelled_pending')),
    -- NULL until the request has finished.
    success            boolean,
    time_created       timestamptz NOT NULL,
    time_started       timestamptz,
    time_completed     timestamptz,
    -- `json`, not `jsonb`: the data and the result come back exactly as they
    -- were sent, and `jsonb` cannot hold a string with \u0000, which a
    -- request may well send. Nothing queries inside them.
    -- NULL when the version's retention mode is `metadata`.
    request_data       json,
    result             json,
    -- Sizes in bytes of the data and the result as JSON, kept in every
    -- retention mode (newer clients show them).
    input_size         bigint,
    output_size        bigint,
    -- The official clients refuse a longer one.
    error_message      text CHECK (char_length(error_message) <= 1024),
    created_by         text NOT NULL,
    -- What the request came through, e.g. {"deployment": ..., "deployment_version": ...}.
    origin             jsonb NOT NULL,
    notification_group text,
    timeout_seconds    integer NOT NULL CHECK (timeout_seconds > 0),
    retries            integer NOT NULL DEFAULT 0 CHECK (retries >= 0),
    -- When the version's retention time has passed and the sweep may delete
    -- the request (only once it has finished).
    expires_at         timestamptz NOT NULL,
    -- For the batch queue: the worker holding a `processing` request and
    -- until when (a worker that dies stops renewing, and the request goes
    -- back to `pending` when the lease expires, with `retries` counted), and
    -- when a request put back after a fault may be claimed again. The queue
    -- adds the index it claims by (`pending` rows in `time_created` order,
    -- taken `FOR UPDATE SKIP LOCKED`) with its first query.
    worker_id          text,
    lease_expires_at   timestamptz,
    retry_at           timestamptz
);

-- A version's or a project's requests by time (newest or oldest first); the
-- id breaks ties so that pages do not overlap.
CREATE INDEX deployment_requests_by_version ON deployment_requests (version_id, time_created, id);
CREATE INDEX deployment_requests_by_project ON deployment_requests (project_id, time_created, id);
-- The expiry sweep: only finished requests expire (`cancelled_pending` is
-- still held by a worker).
CREATE INDEX deployment_requests_by_expiry ON deployment_requests (expires_at)
    WHERE status IN ('completed', 'failed', 'cancelled');
-- For the cascade when a deployment is deleted (the other foreign keys lead
-- an index above).
CREATE INDEX deployment_requests_by_deployment ON deployment_requests (deployment_id);

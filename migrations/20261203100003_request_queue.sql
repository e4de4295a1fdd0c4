-- The batch queue: a version's pending requests in the order they are
-- claimed (oldest first), counted against its maximum_queue_size_batch.
CREATE INDEX deployment_requests_queue ON deployment_requests (version_id, time_created, id)
    WHERE status = 'pending';
-- Requests held by a worker, by the end of their lease: those whose worker
-- stopped renewing are found and put back (or failed) by the recovery sweep.
CREATE INDEX deployment_requests_leases ON deployment_requests (lease_expires_at)
    WHERE status IN ('processing', 'cancelled_pending');

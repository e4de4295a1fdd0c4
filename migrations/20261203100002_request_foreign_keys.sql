-- A request's version decides its lifetime: deleting a project deletes its
-- deployments, theirs their versions, and a version's delete takes its
-- requests. The project and deployment ids stay as copies for filtering,
-- without foreign keys of their own: each stored request checked and
-- share-locked three parent rows, two of them only to repeat what the
-- version's key already guarantees.
ALTER TABLE deployment_requests
    DROP CONSTRAINT deployment_requests_project_id_fkey,
    DROP CONSTRAINT deployment_requests_deployment_id_fkey;
-- It served only the deployment's cascade.
DROP INDEX deployment_requests_by_deployment;

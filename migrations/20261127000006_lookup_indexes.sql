-- What the benchmark (bench/run, BENCHMARKS.md) found missing.

-- Inherited variables: a version's list reads its project's own variables,
-- its deployment's and its own, each through an index instead of every
-- variable in the project.
CREATE INDEX environment_variables_project_level ON environment_variables (project_id)
    WHERE deployment_id IS NULL;
CREATE INDEX environment_variables_by_deployment ON environment_variables (deployment_id)
    WHERE deployment_id IS NOT NULL;
CREATE INDEX environment_variables_by_version ON environment_variables (version_id)
    WHERE version_id IS NOT NULL;

-- Deleting a revision or build sets the versions that point at it to NULL
-- (ON DELETE SET NULL): without these, each such deletion (every revision of
-- a deleted version or deployment) scanned all versions.
CREATE INDEX versions_by_active_revision ON versions (active_revision_id)
    WHERE active_revision_id IS NOT NULL;
CREATE INDEX versions_by_latest_build ON versions (latest_build_id)
    WHERE latest_build_id IS NOT NULL;

-- A deployment's number of versions, kept by the version create and delete
-- (which lock the deployment row): a list of 100 deployments read it instead
-- of counting versions once per deployment.
ALTER TABLE deployments ADD COLUMN number_of_versions integer NOT NULL DEFAULT 0
    CHECK (number_of_versions >= 0);
UPDATE deployments d SET number_of_versions = (SELECT count(*) FROM versions v WHERE v.deployment_id = d.id);

-- Indexes found missing by the benchmark (bench/run, BENCHMARKS.md).

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

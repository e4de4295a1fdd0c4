-- GET deployment and the deployment list show the default version's name.
-- Keeping it on the deployment row spares them a join to versions per row
-- (a third of PostgreSQL's time for a 100-deployment list, BENCHMARKS.md).
-- The foreign key keeps the copy right: renaming the version cascades to it,
-- deleting the version empties both columns, and the check below makes sure
-- the name is never set without the id (which would skip the foreign key).
ALTER TABLE versions
    ADD CONSTRAINT versions_id_deployment_name UNIQUE (id, deployment_id, name);

ALTER TABLE deployments ADD COLUMN default_version_name text;

UPDATE deployments d SET default_version_name = v.name
  FROM versions v WHERE v.id = d.default_version_id;

ALTER TABLE deployments
    DROP CONSTRAINT deployments_default_version,
    ADD CONSTRAINT deployments_default_version
        FOREIGN KEY (default_version_id, id, default_version_name)
        REFERENCES versions (id, deployment_id, name)
        ON UPDATE CASCADE
        ON DELETE SET NULL (default_version_id, default_version_name),
    ADD CONSTRAINT deployments_default_version_named
        CHECK ((default_version_id IS NULL) = (default_version_name IS NULL));

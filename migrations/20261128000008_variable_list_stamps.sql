-- The server keeps each scope's variable list rendered, keyed by the row
-- versions (`xmin`) of the project, deployment and version rows that scope
-- names (crates/api/src/rendered.rs), so that a list whose variables have not
-- changed costs one small lookup. For that, every write of a variable also
-- writes the row of the scope that owns it, in the same transaction. A
-- trigger, so that no write path (create, update, delete, copy, cascades, and
-- whatever comes later) can forget it.

ALTER TABLE projects ADD COLUMN variables_revision bigint NOT NULL DEFAULT 0;
ALTER TABLE deployments ADD COLUMN variables_revision bigint NOT NULL DEFAULT 0;
ALTER TABLE versions ADD COLUMN variables_revision bigint NOT NULL DEFAULT 0;

CREATE FUNCTION touch_variable_scope(variable environment_variables) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    -- When the owner itself is being deleted (a cascade), these find no row.
    IF variable.version_id IS NOT NULL THEN
        UPDATE versions SET variables_revision = variables_revision + 1
        WHERE id = variable.version_id;
    ELSIF variable.deployment_id IS NOT NULL THEN
        UPDATE deployments SET variables_revision = variables_revision + 1
        WHERE id = variable.deployment_id;
    ELSE
        UPDATE projects SET variables_revision = variables_revision + 1
        WHERE id = variable.project_id;
    END IF;
END $$;

CREATE FUNCTION environment_variables_touch_scope() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM touch_variable_scope(OLD);
    END IF;
    IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE'
        AND (OLD.project_id, OLD.deployment_id, OLD.version_id)
            IS DISTINCT FROM (NEW.project_id, NEW.deployment_id, NEW.version_id)) THEN
        PERFORM touch_variable_scope(NEW);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER environment_variables_touch_scope
    AFTER INSERT OR UPDATE OR DELETE ON environment_variables
    FOR EACH ROW EXECUTE FUNCTION environment_variables_touch_scope();

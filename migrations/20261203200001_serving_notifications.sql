-- Each server process keeps the serving targets of the versions it serves
-- (crates/storage/src/serving_cache.rs). Any change to what a request needs
-- from these rows notifies them all to read again. Variable writes and
-- revision deletions change the rows of their scopes and versions, so the
-- three tables cover them. Identical notifications of one transaction reach
-- listeners once.
CREATE FUNCTION notify_serving_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('ubiops_serving_changed', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER projects_serving_changed
    AFTER UPDATE OR DELETE ON projects
    FOR EACH STATEMENT EXECUTE FUNCTION notify_serving_changed();
CREATE TRIGGER deployments_serving_changed
    AFTER UPDATE OR DELETE ON deployments
    FOR EACH STATEMENT EXECUTE FUNCTION notify_serving_changed();
CREATE TRIGGER versions_serving_changed
    AFTER UPDATE OR DELETE ON versions
    FOR EACH STATEMENT EXECUTE FUNCTION notify_serving_changed();

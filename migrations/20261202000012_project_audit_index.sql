-- The project audit list (newest first, paged) reads by project the way the
-- deployment list reads by deployment.
DROP INDEX audit_events_by_project;
CREATE INDEX audit_events_by_project ON audit_events (project_id, date DESC, seq DESC);

-- Log lines: one row per line, written by the build worker (and, later, by
-- whatever else produces lines), read by the project logs endpoints.

-- `ns` is the line's time in nanoseconds since the epoch and its identity:
-- PostgreSQL's clock has microseconds, so a line takes the clock's time in
-- nanoseconds or, if that is not after the previous line's, the previous
-- line's plus one. That keeps `ns` unique and in write order, which the newer
-- client's paging needs (it asks for lines from the last one's `ns` + 1).
-- The 3.13 `id` of a line is `ns` in hexadecimal.
CREATE TABLE logs (
    ns                    bigint PRIMARY KEY,
    project_id            uuid NOT NULL REFERENCES projects (id) ON DELETE CASCADE,
    -- Tags. Names are those at the time of the line (filters match them, as
    -- labels of a log store would); the ids are kept beside them. A deleted
    -- version takes its lines with it, so a new version of the same name
    -- starts without the old one's lines.
    deployment_id         uuid,
    deployment_name       text,
    version_id            uuid REFERENCES versions (id) ON DELETE CASCADE,
    version_name          text,
    build_id              uuid,
    revision_id           uuid,
    deployment_request_id uuid,
    system                boolean NOT NULL,
    level                 text NOT NULL CHECK (level IN ('info', 'error')),
    text                  text NOT NULL
);
-- Every read is one project's lines in a range of time.
CREATE INDEX logs_by_project ON logs (project_id, ns);
-- For the cascade when a version is deleted.
CREATE INDEX logs_by_version ON logs (version_id) WHERE version_id IS NOT NULL;

-- The last `ns` handed out. Every append updates this row, so appends take
-- their times one after another and a line never becomes visible after a line
-- with a later `ns` (its writer holds the row until it commits): a reader
-- paging forward by `ns` never skips a line. Appends take it as the last lock
-- of their transaction.
CREATE TABLE log_clock (
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    last_ns  bigint NOT NULL
);
INSERT INTO log_clock (last_ns) VALUES (0);

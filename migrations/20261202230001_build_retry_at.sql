-- A build stopped by a fault (storage unreachable, the inspector crashing)
-- goes back to the queue with its attempt counted and waits until `retry_at`
-- before a worker may claim it again: the wait doubles with each attempt, so
-- a fault that repeats cannot keep a worker spinning on one build.
ALTER TABLE builds ADD COLUMN retry_at timestamptz;

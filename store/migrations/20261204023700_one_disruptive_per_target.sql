-- Only disruptive actions run one at a time per target: notify actions of different incidents to
-- one target (a pager's URL) run side by side, bounded by the execution slots
-- (safety.max_concurrent_actions). Within one incident an action still waits for the one running
-- on its target, so that a page's resolve event is sent after its trigger in flight.
--
-- Each unique index makes the start of a second running action fail (the executor waits for it).
-- The one per incident and target holds every running action: it also serves the lease
-- reaper's scan of running rows, which the old index served. The new indexes are built before the
-- old one is dropped, so no moment is left without one.

CREATE UNIQUE INDEX actions_one_running_per_incident_target ON actions (incident_id, target_key(target))
    WHERE state = 'running';
CREATE UNIQUE INDEX actions_one_running_disruptive_per_target ON actions (target_key(target))
    WHERE state = 'running' AND class = 'disruptive';
DROP INDEX actions_one_running_per_target;
ALTER INDEX actions_one_running_disruptive_per_target RENAME TO actions_one_running_per_target;

---- create above / drop below ----

-- Fails while actions of two incidents run on one target: let them finish first.
DROP INDEX actions_one_running_per_target;
CREATE UNIQUE INDEX actions_one_running_per_target ON actions (target_key(target)) WHERE state = 'running';
DROP INDEX actions_one_running_per_incident_target;

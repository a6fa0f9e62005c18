-- The action columns that hold package vocab's values get the checks incidents.state and
-- actions.phase already have, so that the database refuses a value vocab does not list and a
-- store test can compare each check with its list (issue 14). NOT VALID then VALIDATE: the scan
-- of existing rows does not block writers.

ALTER TABLE actions ADD CONSTRAINT actions_state_check CHECK (state IN
    ('planned', 'awaiting_approval', 'approved', 'denied', 'expired', 'running', 'succeeded',
     'failed', 'unknown', 'skipped', 'dry_run')) NOT VALID;
-- class is '' on an action that was never built (bad_param, or skipped after a broken step).
ALTER TABLE actions ADD CONSTRAINT actions_class_check CHECK (class IN ('', 'notify', 'disruptive')) NOT VALID;
ALTER TABLE actions ADD CONSTRAINT actions_mode_check CHECK (mode IN ('enforce', 'shadow')) NOT VALID;
ALTER TABLE actions VALIDATE CONSTRAINT actions_state_check;
ALTER TABLE actions VALIDATE CONSTRAINT actions_class_check;
ALTER TABLE actions VALIDATE CONSTRAINT actions_mode_check;

---- create above / drop below ----

ALTER TABLE actions DROP CONSTRAINT actions_mode_check;
ALTER TABLE actions DROP CONSTRAINT actions_class_check;
ALTER TABLE actions DROP CONSTRAINT actions_state_check;

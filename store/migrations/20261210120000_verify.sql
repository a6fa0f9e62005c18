-- Rule-level verify (issue 19): the last step of a rule with `verify` goes running → verifying
-- when its handler succeeded, and stays there until its verify deadline at the latest; then it
-- becomes succeeded, or failed with reason not_recovered. The deadline is a column of the action
-- (it is the action's timer: whoever locks the row first settles it, once), and a partial index
-- keeps the few verifying rows at hand for the engine's pass over them.
--
-- The state check gains 'verifying' (NOT VALID here: no scan while this migration holds the
-- table; the next migration validates it without blocking writers).
--
-- firing_alerts gains the source and value of each firing alert, for probe("name") in
-- expressions (its success and value).

ALTER TABLE actions ADD COLUMN verify_deadline timestamptz;
ALTER TABLE actions DROP CONSTRAINT actions_state_check;
ALTER TABLE actions ADD CONSTRAINT actions_state_check CHECK (state IN
    ('planned', 'awaiting_approval', 'approved', 'denied', 'expired', 'running', 'succeeded',
     'failed', 'unknown', 'skipped', 'dry_run', 'verifying')) NOT VALID;
CREATE INDEX actions_verifying ON actions (verify_deadline) WHERE state = 'verifying';

ALTER TABLE firing_alerts ADD COLUMN source text NOT NULL DEFAULT '';
ALTER TABLE firing_alerts ADD COLUMN value double precision;

---- create above / drop below ----

-- Fails while actions are verifying (the old check refuses them): let them settle first.
ALTER TABLE firing_alerts DROP COLUMN value;
ALTER TABLE firing_alerts DROP COLUMN source;
DROP INDEX actions_verifying;
ALTER TABLE actions DROP CONSTRAINT actions_state_check;
ALTER TABLE actions ADD CONSTRAINT actions_state_check CHECK (state IN
    ('planned', 'awaiting_approval', 'approved', 'denied', 'expired', 'running', 'succeeded',
     'failed', 'unknown', 'skipped', 'dry_run'));
ALTER TABLE actions DROP COLUMN verify_deadline;

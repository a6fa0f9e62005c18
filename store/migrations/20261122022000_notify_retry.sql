-- Notify actions (pages) that fail for a transient reason wait in `planned` until not_before and
-- are tried again; a resolving incident sends the resolve event of each page it sent (phase resolve).

ALTER TABLE actions ADD COLUMN not_before timestamptz;
ALTER TABLE actions DROP CONSTRAINT actions_phase_check;
ALTER TABLE actions ADD CONSTRAINT actions_phase_check CHECK (phase IN ('actions', 'escalate', 'on_resolved', 'resolve'));

---- create above / drop below ----

DELETE FROM actions WHERE phase = 'resolve';
ALTER TABLE actions DROP CONSTRAINT actions_phase_check;
ALTER TABLE actions ADD CONSTRAINT actions_phase_check CHECK (phase IN ('actions', 'escalate', 'on_resolved'));
ALTER TABLE actions DROP COLUMN not_before;

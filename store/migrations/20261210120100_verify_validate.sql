-- Validates the state check the previous migration added NOT VALID, in a transaction of its own:
-- VALIDATE CONSTRAINT takes a lock that lets writers go on while it scans the actions.

ALTER TABLE actions VALIDATE CONSTRAINT actions_state_check;

---- create above / drop below ----

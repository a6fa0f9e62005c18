-- Chained steps (issue 19): a step's params may read the result of an earlier step of its list.
-- result_fields are the fields a handler declares and fills (handlers.Result.Fields), kept with
-- the outcome; chain is set on a step whose params read them: the deferred params as written in
-- the rule ("params") and the step index of each id they read ("steps"). The executor renders
-- those params from the earlier steps' result_fields when it claims the step, so a redelivery or
-- a restart renders the same values. Both NULL on every other action.

ALTER TABLE actions ADD COLUMN result_fields jsonb;
ALTER TABLE actions ADD COLUMN chain jsonb;

---- create above / drop below ----

ALTER TABLE actions DROP COLUMN chain;
ALTER TABLE actions DROP COLUMN result_fields;

-- The gobreaker state machine of each breaker (gobreaker.SharedState as JSON): counts, generation
-- and state, read and written under the breaker row's lock so every replica's gobreaker continues
-- from the same point. The state, opened_at and trial_action_id columns mirror its verdicts.

ALTER TABLE breakers ADD COLUMN machine jsonb;

---- create above / drop below ----

ALTER TABLE breakers DROP COLUMN machine;

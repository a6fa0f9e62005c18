-- Dead letters can be replayed (issue 13): who replayed one, when, and under which bus message id;
-- the failure is split into its reason (undecodable, permanent, ...) and the error text; the
-- delivery count is kept. Open incidents nobody has heard of for safety.retention are closed as
-- `abandoned` (retention), so the state check gains that value.

ALTER TABLE dead_letters
    ADD COLUMN error         text        NOT NULL DEFAULT '',
    ADD COLUMN deliveries    bigint      NOT NULL DEFAULT 0,
    ADD COLUMN replayed_at   timestamptz,
    ADD COLUMN replayed_by   text        NOT NULL DEFAULT '',
    ADD COLUMN replay_msg_id text        NOT NULL DEFAULT '';

-- Rows written before: "undecodable: decode alerts: ..." → reason undecodable, error the rest.
UPDATE dead_letters
   SET error = substr(reason, strpos(reason, ': ') + 2), reason = split_part(reason, ': ', 1)
 WHERE reason ~ '^[a-z_]+: ';

-- The unreplayed ones are counted (responder_dead_letters) and listed by retention.
CREATE INDEX dead_letters_unreplayed ON dead_letters (at) WHERE replayed_at IS NULL;

ALTER TABLE incidents DROP CONSTRAINT incidents_state_check;
ALTER TABLE incidents ADD CONSTRAINT incidents_state_check
    CHECK (state IN ('pending', 'firing', 'resolved', 'suppressed', 'abandoned'));
-- No index for retention's hourly scan of open incidents by last_seen_at: one would cost every
-- alert's incident refresh its HOT update.

---- create above / drop below ----

ALTER TABLE incidents DROP CONSTRAINT incidents_state_check;
UPDATE incidents SET state = 'resolved' WHERE state = 'abandoned';
ALTER TABLE incidents ADD CONSTRAINT incidents_state_check
    CHECK (state IN ('pending', 'firing', 'resolved', 'suppressed'));
DROP INDEX dead_letters_unreplayed;
UPDATE dead_letters SET reason = reason || ': ' || error WHERE error <> '';
ALTER TABLE dead_letters
    DROP COLUMN replay_msg_id,
    DROP COLUMN replayed_by,
    DROP COLUMN replayed_at,
    DROP COLUMN deliveries,
    DROP COLUMN error;

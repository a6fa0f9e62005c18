-- Targets are rendered from alert labels and may be long (a 3,000-character pod label): a B-tree
-- entry holds at most ~2.7 kB, so an index on the raw target refused the action's start and
-- rolled back the executor's whole pass. The one-running-per-target index and the cooldowns key
-- index a SHA-256 of the target instead. target_key is IMMUTABLE because a database's encoding
-- never changes (convert_to alone is only STABLE, which an index expression may not be).

CREATE FUNCTION target_key(target text) RETURNS bytea
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT sha256(convert_to(target, 'UTF8')) $$;

DROP INDEX actions_one_running_per_target;
CREATE UNIQUE INDEX actions_one_running_per_target ON actions (target_key(target)) WHERE state = 'running';

DROP INDEX actions_rule_target_member;
CREATE INDEX actions_rule_target_member ON actions (rule, target_key(target), created_at) WHERE member IS NOT NULL;

ALTER TABLE cooldowns ADD COLUMN target_key bytea;
UPDATE cooldowns SET target_key = target_key(target);
ALTER TABLE cooldowns ALTER COLUMN target_key SET NOT NULL;
ALTER TABLE cooldowns DROP CONSTRAINT cooldowns_pkey;
ALTER TABLE cooldowns ADD PRIMARY KEY (rule, target_key);

---- create above / drop below ----

ALTER TABLE cooldowns DROP CONSTRAINT cooldowns_pkey;
ALTER TABLE cooldowns ADD PRIMARY KEY (rule, target);
ALTER TABLE cooldowns DROP COLUMN target_key;

DROP INDEX actions_rule_target_member;
CREATE INDEX actions_rule_target_member ON actions (rule, target, created_at) WHERE member IS NOT NULL;

DROP INDEX actions_one_running_per_target;
CREATE UNIQUE INDEX actions_one_running_per_target ON actions (target) WHERE state = 'running';

DROP FUNCTION target_key(text);

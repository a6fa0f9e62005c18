-- The member of a workload an action touches (a Deployment's pod), for the storm guard's
-- max_workload_fraction: distinct members acted on per (rule, target) within the window.

ALTER TABLE actions ADD COLUMN member text;
CREATE INDEX actions_rule_target_member ON actions (rule, target, created_at) WHERE member IS NOT NULL;

---- create above / drop below ----

DROP INDEX actions_rule_target_member;
ALTER TABLE actions DROP COLUMN member;

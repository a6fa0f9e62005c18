-- The storm guard counts, per rule, the distinct targets of the disruptive actions planned within
-- its window (StormyRulesTx), on every executor pass that claimed a disruptive action. Without an
-- index that is a scan of every action kept (safety.retention: 90 days by default). Disruptive
-- actions are few: the partial index is small, and the count reads only the rows of the window.
-- (It does not hold the target: a target may be longer than an index row may be, which is why the
-- other indexes use target_key(target).)

CREATE INDEX actions_storm_window ON actions (rule, created_at)
    WHERE phase = 'actions' AND class = 'disruptive';

---- create above / drop below ----

DROP INDEX actions_storm_window;

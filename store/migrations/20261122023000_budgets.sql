-- Budgets shared by all rules: one row per disruptive action that spent from a budget.

CREATE TABLE budget_spend (
    budget    text        NOT NULL,
    key       text        NOT NULL,   -- the action's scope (namespace, cluster) or '' for global
    action_id bigint      NOT NULL REFERENCES actions (id) ON DELETE CASCADE,
    at        timestamptz NOT NULL,
    PRIMARY KEY (budget, key, action_id)
);
CREATE INDEX budget_spend_window ON budget_spend (budget, key, at);

---- create above / drop below ----

DROP TABLE budget_spend;

-- Circuit breakers per (handler, scope): the state and its transitions are rows (compare-and-set),
-- so every replica agrees and the state survives restarts.

CREATE TABLE breakers (
    handler         text        NOT NULL,
    scope           text        NOT NULL,
    state           text        NOT NULL CHECK (state IN ('closed', 'open', 'half_open')),
    failures        int         NOT NULL DEFAULT 0,   -- consecutive failures while closed
    opened_at       timestamptz,
    trial_action_id bigint,                           -- the one half-open trial, cluster-wide
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (handler, scope)
);

---- create above / drop below ----

DROP TABLE breakers;

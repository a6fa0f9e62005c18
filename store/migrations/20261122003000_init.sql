-- Foundation schema: incidents, timers, actions, cooldowns, audit, dead letters.
-- Every row that records a decision carries the responder version and the rule file's hash.

CREATE TABLE incidents (
    id            bigserial PRIMARY KEY,
    rule          text        NOT NULL,
    fingerprint   text        NOT NULL,
    starts_at     timestamptz NOT NULL,
    state         text        NOT NULL CHECK (state IN ('pending', 'firing', 'resolved', 'suppressed')),
    alert_name    text        NOT NULL,
    labels        jsonb       NOT NULL,
    alert         json        NOT NULL,   -- the latest alert received for this episode (json: stored, never queried)
    last_seen_at  timestamptz NOT NULL,   -- when responder last received it (staleness)
    fired_at      timestamptz,
    resolved_at   timestamptz,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       text        NOT NULL,
    rule_hash     text        NOT NULL,
    UNIQUE (rule, fingerprint, starts_at)
);
-- Indexes cost a write per row on the hot path: only those a query needs.
CREATE INDEX incidents_fingerprint ON incidents (fingerprint, starts_at);
CREATE INDEX incidents_resolved_at ON incidents (resolved_at) WHERE resolved_at IS NOT NULL;

-- Timers are rows: whoever claims one (FOR UPDATE SKIP LOCKED) fires it, once.
CREATE TABLE timers (
    id          bigserial PRIMARY KEY,
    incident_id bigint      NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    kind        text        NOT NULL,
    due_at      timestamptz NOT NULL,
    UNIQUE (incident_id, kind)
);
CREATE INDEX timers_due ON timers (due_at);

CREATE TABLE actions (
    id           bigserial PRIMARY KEY,
    incident_id  bigint      NOT NULL REFERENCES incidents (id) ON DELETE CASCADE,
    phase        text        NOT NULL CHECK (phase IN ('actions', 'escalate', 'on_resolved')),
    step         int         NOT NULL,
    rule         text        NOT NULL,
    handler      text        NOT NULL,
    target       text        NOT NULL,
    scope        text        NOT NULL,
    class        text        NOT NULL,
    mode         text        NOT NULL,
    params       json        NOT NULL,
    approval     text        NOT NULL,
    timeout_ms   bigint      NOT NULL,
    state        text        NOT NULL,
    reason       text        NOT NULL DEFAULT '',
    attempt      int         NOT NULL DEFAULT 0,
    approved_by  text        NOT NULL DEFAULT '',
    owner        text        NOT NULL DEFAULT '',
    lease_until  timestamptz,
    created_at   timestamptz NOT NULL,
    basis_at     timestamptz NOT NULL,   -- when the evidence the action was planned on was current
    started_at   timestamptz,
    finished_at  timestamptz,
    error        text        NOT NULL DEFAULT '',
    result       text        NOT NULL DEFAULT '',
    version      text        NOT NULL,
    rule_hash    text        NOT NULL,
    UNIQUE (incident_id, phase, step)
);
-- One action at a time per target, across replicas (and the lease reaper's scan of running rows).
CREATE UNIQUE INDEX actions_one_running_per_target ON actions (target) WHERE state = 'running';
CREATE INDEX actions_runnable ON actions (id) WHERE state IN ('planned', 'approved');
CREATE INDEX actions_awaiting ON actions (created_at) WHERE state = 'awaiting_approval';
-- (incident_id, phase, step) above serves lookups by incident; API filters walk the primary key.

CREATE TABLE cooldowns (
    rule   text        NOT NULL,
    target text        NOT NULL,
    until  timestamptz NOT NULL,
    PRIMARY KEY (rule, target)
);

CREATE TABLE audit (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    incident_id bigint,
    action_id   bigint,
    kind        text        NOT NULL,
    actor       text        NOT NULL,
    reason      text        NOT NULL DEFAULT '',
    detail      json        NOT NULL DEFAULT '{}',
    version     text        NOT NULL,
    rule_hash   text        NOT NULL DEFAULT ''
);
CREATE INDEX audit_incident ON audit (incident_id, id);
-- Append-only and in time order: a BRIN index serves retention at almost no write cost.
CREATE INDEX audit_at ON audit USING brin (at);

CREATE TABLE dead_letters (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL,
    msg_id  text        NOT NULL,
    reason  text        NOT NULL,
    data    bytea       NOT NULL,
    version text        NOT NULL
);

---- create above / drop below ----

DROP TABLE dead_letters;
DROP TABLE audit;
DROP TABLE cooldowns;
DROP TABLE actions;
DROP TABLE timers;
DROP TABLE incidents;

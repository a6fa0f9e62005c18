-- Every firing alert (any source), while some rule uses firing(): the set firing(name) reads, so a
-- rule can be gated on an alert no rule acts on.

CREATE TABLE firing_alerts (
    fingerprint text        PRIMARY KEY,
    name        text        NOT NULL,
    labels      jsonb       NOT NULL,
    starts_at   timestamptz NOT NULL,
    last_seen   timestamptz NOT NULL
);
CREATE INDEX firing_alerts_last_seen ON firing_alerts (last_seen);

---- create above / drop below ----

DROP TABLE firing_alerts;

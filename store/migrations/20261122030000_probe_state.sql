-- Probe state: one row per probe with the runner's episode state (firing or not, the episode's
-- start and labels, consecutive counts, alerts not yet published), so a new leader continues the
-- episode the old one started (same startsAt). state is an opaque JSON document owned by
-- source/probe; rows of probes no longer configured are ignored.
CREATE TABLE probe_states (
    name       text        PRIMARY KEY,
    state      jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

---- create above / drop below ----

DROP TABLE probe_states;

-- Disaster-recovery drills (issue 17). One row per drill run: who started it (the CLI or the
-- schedule), what it injected and how it ended, with the drill's report as posted. A scheduled
-- run is unique per (name, scheduled_for): replicas that fire the same slot start one run.
--
-- Drill incidents are the ones whose alert carries the responder_drill label (its value is the
-- run id). The API filters incidents and actions by it through an expression index on the
-- labels: no column, no table rewrite; partial, so it holds the drills' incidents only.

CREATE TABLE drill_runs (
    id              bigserial PRIMARY KEY,
    run_id          text        NOT NULL UNIQUE,
    name            text        NOT NULL,
    trigger         text        NOT NULL CONSTRAINT drill_runs_trigger_check CHECK (trigger IN ('cli', 'schedule')),
    actor           text        NOT NULL,
    scheduled_for   timestamptz,
    probes          text[]      NOT NULL DEFAULT '{}',
    page_real       boolean     NOT NULL DEFAULT false,
    rto_seconds     double precision NOT NULL,
    started_at      timestamptz NOT NULL,
    injected_at     timestamptz,
    finished_at     timestamptz,
    passed          boolean,
    failure         text        NOT NULL DEFAULT '',
    recover_seconds double precision,
    report          json,       -- the drill's report as posted (json: stored, never queried)
    version         text        NOT NULL,
    CHECK ((finished_at IS NULL) = (passed IS NULL))
);
CREATE UNIQUE INDEX drill_runs_scheduled_slot ON drill_runs (name, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX drill_runs_name ON drill_runs (name, id);
CREATE INDEX drill_runs_unfinished ON drill_runs (started_at) WHERE finished_at IS NULL;

CREATE INDEX incidents_drill ON incidents ((labels->>'responder_drill')) WHERE labels ? 'responder_drill';

---- create above / drop below ----

DROP INDEX incidents_drill;
DROP TABLE drill_runs;

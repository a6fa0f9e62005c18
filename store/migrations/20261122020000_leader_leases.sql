-- Leader leases: one row per singleton job (probes, ...). The holder renews it by UPDATE before
-- expires_at; anyone may take it once it has expired. token is the fencing token: it grows by one
-- at every change of holder and is never reused (rows are never deleted), so a side effect taken
-- under leadership can be refused when its token is stale (store.CheckFence). A released lease has
-- expires_at = '-infinity' (scan it into pgtype.Timestamptz, not time.Time).
-- Times come from the replicas' clocks (never now() in SQL), so replicas must keep them in sync
-- to well within a lease's TTL.
CREATE TABLE leader_leases (
    name        text        PRIMARY KEY,
    holder      text        NOT NULL,
    token       bigint      NOT NULL CHECK (token > 0),
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL,   -- when holder took it (kept across its renewals and re-acquires)
    renewed_at  timestamptz NOT NULL
);

---- create above / drop below ----

DROP TABLE leader_leases;

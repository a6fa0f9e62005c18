// Package postgres implements the PostgreSQL failover handlers postgres.switchover,
// postgres.failover (Patroni clusters) and postgres.promote (plain streaming replication), all of
// class disruptive, configured by handlers.postgres.clusters (config.PostgresHandlerConfig).
//
// Contract, for every handler:
//   - Target and Scope are "postgres/<cluster>": one action per cluster at a time, cooldowns,
//     breakers and budgets (`per: cluster`) count per cluster.
//   - The cluster param names a configured cluster of the right kind (Patroni for switchover and
//     failover, streaming for promote); a literal one is checked at rule load, a templated one at
//     Build (bad_param). The candidate param names a member (Patroni) or a configured standby.
//   - Do is idempotent: it reads the state first. A change already made (the candidate already
//     promoted, a Patroni leader change recorded in /history after the alert started) is only
//     verified, never repeated. A state that is neither the start nor the end (an old primary
//     fenced but no standby promoted: a crash between steps) is refused with client_error
//     "half-done: ...; needs a human" and is never continued automatically.
//   - Refusals of a precondition fail with client_error and a message starting "refused:". An
//     unreachable Patroni API or server is server_error; a change that did not take effect in the
//     verify window is not_recovered. A switchover or failover Patroni answers with an error is
//     classified by handlers/delivery (5xx server_error, a refusal client_error) and is never
//     sent again; Patroni's answers are read up to 1 MiB, errors keep an excerpt of 256 bytes.
//   - Every step is recorded, with LSNs and timings, in the Result detail (also on failure: the
//     engine stores the detail with the error), and logged. On success the detail ends with the
//     measured time to recover (alert.StartsAt → promotion verified) against the cluster's rto.
//   - Secrets (DSNs, the Patroni password, fence headers) never appear in errors, details or logs.
//
// postgres.switchover (Patroni): reads GET /cluster and each member's GET /patroni; requires a
// running leader, an unpaused cluster and a running replica candidate whose received lag (the
// leader's current WAL location minus the candidate's received location, and Patroni's own lag,
// whichever is larger) is within max_lag; POST /switchover {leader, candidate}; then verifies that
// exactly one member answers 200 on GET /primary, that it is the candidate and that the timeline
// advanced.
//
// postgres.failover (Patroni): for a cluster with no running leader, or paused: POST /failover
// {candidate}. Patroni warns this can lose data, so its Spec forbids `approval: none`; the
// detail records every member's last received LSN (the approver's evidence, also shown by Check
// in dry runs). It refuses a cluster with a running leader that is not paused (use switchover).
//
// postgres.promote (streaming): confirms the primary is down from responder's side (detect:
// Failures consecutive failed connections spread over at least MinPeriod; param
// require_primary_down: false skips this for a planned promotion); waits (bounded) for the
// standby to replay all it received; fences the old primary when it is reachable at all
// (ALTER SYSTEM SET default_transaction_read_only = on and responder.fenced = '<time> <key>',
// pg_reload_conf(), terminate other client sessions; or the configured fence URL, always called),
// then waits for the standby to receive and replay the fenced primary's last WAL; SELECT
// pg_promote(wait => true); verifies pg_is_in_recovery() = false and a test write (a temporary
// table). A primary still writable after the standby was promoted is a second primary: refused
// (client_error), never acted on. Clusters configured with patroni are refused.
package postgres

// Package probe runs responder's own health checks (the `probes:` section of the config) and
// turns them into alerts, so one rule language covers probes and Alertmanager.
//
// Each probe runs every interval with a timeout and yields a Measurement: a value (latency in
// seconds for http, tcp, redis and a postgres primary; a list's length for redis with llen;
// replication lag in seconds for a postgres standby; free ratio 0..1 for disk; days until expiry
// for tls; the query result for prometheus; the newest backup's age in seconds for backup) and an
// error when the check itself failed. A run is a failure when the check failed or when the
// probe's firing_when expression (over `value`) is true. A backup probe older than its max_age
// fails with its value kept; an http probe's status_map decides which statuses fail and labels
// such a failure http_status.
//
// A failing probe is an alert: alert.Alert with source "probe", the alertname label and Name set
// to the probe's name, the probe's labels plus probe_kind and instance (the target; postgres adds
// role=primary|standby, an http probe with a status_map http_status=<code> on failures), the run's value, and a summary annotation saying why. Hysteresis:
// failures_to_fire consecutive failures make it firing, with startsAt = the first failure of the
// streak, so a rule's `for: 1m` means "failing for a minute"; successes_to_resolve consecutive
// successes resolve it, with endsAt = the first success of that streak. The alert's labels are
// fixed for the episode (a standby promoted mid-episode still resolves the alert it fired), so the
// firing and resolved alerts share one fingerprint.
//
// Only state changes are published (firing, resolved) plus, while firing, a heartbeat every
// Options.Heartbeat (default 5m) carrying the current value: a probe every 10s on 50 targets
// would otherwise put 18,000 messages an hour on the stream, each of which the engine has to
// evaluate, for no new information. Publish must return only once the alerts are durable; until
// it succeeds the alerts stay pending (in the persisted state) and are retried on the next run, in
// order, so a bus outage loses nothing. Delivery is at least once: the same alert may be
// published twice (after a crash between publish and save), and alert IDs make that harmless.
//
// The per-probe state (firing, episode start and labels, consecutive counts, pending alerts) is
// saved through StateStore whenever it changes and loaded when a Runner starts, so a new leader
// continues the episode the old one started (same startsAt). Only one replica should run the
// probes (the leader); the caller fences Publish and the state saves.
package probe

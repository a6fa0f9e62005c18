// Package ruletest runs promtool-style rule unit tests (`responder rules test FILE...`).
//
// A test runs the same engine code as serve: each test gets a fresh database (a copy of a
// migrated template), engine.New with a clock fixed at the file's `now`, and the handler registry
// serve builds from the config (handlers/builtin) wrapped so that Spec, Build, Target, Scope,
// class and static checks are the real ones (params render and validate exactly as in serve) but
// Do only records success and Check answers handlers.ErrNotCheckable: nothing is ever called.
// Alerts go through (*engine.Engine).Process, `for` timers through FireDueTimers and actions
// through ExecuteOnce passes until nothing moves; matching, `for`, cooldowns and guards are never
// re-implemented here. The config's safety settings apply (budgets, storm guard max_targets,
// breakers, max_alert_age, approvals.ttl) except paused, dry_run and max_workload_fraction (a
// workload's size needs the cluster).
//
// A test file (strict YAML: unknown keys are errors; errors name file:line):
//
//	rule_files: [rules/runbook.yml]   # relative to the test file
//	now: 2026-11-22T10:00:00Z         # optional; default 2026-01-01T12:00:00Z
//	tests:
//	  - name: backend down for 2m pages now
//	    eval_after: 1m                # optional: then move the clock on once and fire due timers
//	    resolve_after: 30s            # optional, not after eval_after: the input alerts resolve then
//	    input_alerts:                 # one batch at now, like one webhook request
//	      - labels: {alertname: BackendDown, service: api}   # alertname required
//	        annotations: {summary: "..."}
//	        status: firing            # or resolved (default firing)
//	        value: 0.5                # optional
//	        starts_at: -2m            # relative to now (default 0 = now); ends_at likewise
//	        source: alertmanager      # or probe
//	    input_probes:                 # a probe result as the probe source emits it: source probe,
//	      - {probe: api-health, kind: http, instance: "http://api:8080/health", value: 3.2,
//	         status: firing, starts_at: -90s, labels: {service: api}}
//	                                  # labels + alertname=<probe> + probe_kind=<kind> (+ instance)
//	    firing:                       # prior state: alerts already firing (default starts_at -1h)
//	      - labels: {alertname: DatabaseDown}
//	    actions_in_last:              # prior state: the rule acted on this alert `ago` before now
//	      - {rule: retrigger-pipelines, ago: 5m, labels: {alertname: Stale, dag: billing}}
//	    approve: true                 # optional: approve every action that awaits approval, as a
//	                                  # human would, so the steps after it run
//	    step_results:                 # optional: what steps with an id report when they run (their
//	      promote: {new_primary: "db-2:5432", timeline: 2}   # handler's result fields), by step id
//	    exp_actions:                  # or [] = must not act
//	      - rule: backend-down
//	        handler: page.webhook
//	        phase: actions            # default; or escalate, on_resolved, resolve (a page's resolve)
//	        params: {summary: "api is down"}   # only the listed keys are compared
//	        approval: none            # none | required; omitted = not compared
//	        verify: recovered         # verifying | recovered | not_recovered; omitted = not compared
//
// Prior state is made by the engine itself, at earlier times on the same database: each `firing`
// alert is received at its starts_at and the rules' `for` timers fire when due (so, as in serve,
// firing() sees it); each actions_in_last entry sends
// its alert (starts_at = that time minus the rule's `for`) `ago` before now, approves the
// rule's actions if they need approval, fails the test file if the rule did not act, and then
// resolves that episode. Cooldowns, open incidents and sent pages are therefore exactly what serve
// would have.
//
// The result of a test is every action planned from now on (up to now + eval_after): actions that
// ran, wait for approval, wait behind an earlier step or failed (shown with `failed:` and the
// reason, e.g. a template that did not render). Actions a guard refused (cooldown, budget, storm,
// breaker) or that were cancelled do not act; a failing test lists them under "not acted".
// Expected and planned actions are matched one to one, in any order.
//
// A rule's `verify` runs as in serve (the recording handlers succeed): its last action is
// `verifying` until the verify deadline; with eval_after at or past it, the action fails
// not_recovered and the escalation is planned, unless resolve_after resolved the alerts in time
// (recovered). Timers, verify deadlines included, fire before the batch of the same instant. A
// not_recovered action matches only an expectation that says verify: not_recovered.
//
// Chained steps (steps.<id>.result.<field>) run as in serve: a recorded action with an id reports
// the result fields its handler declares, each the test's step_results value or else a stand-in
// (a string: "steps.<id>.result.<field>"; an integer: 1; a boolean: false), and the step that reads
// them renders when it runs; its expected params are the rendered ones. Until it runs (an earlier
// step awaits approval), its params are as written. step_results for an id no step has, or a field
// its handler does not declare, fails the test.
//
// Output, like promtool: "Unit Testing: FILE" then "  SUCCESS", or "  FAILED:" with each failed
// test's file:line, name and a diff (-expected +got). Run returns 1 on any failure or load error.
package ruletest

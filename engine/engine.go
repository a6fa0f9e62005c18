// Package engine turns alerts into incidents and planned actions, and runs those actions.
//
// Process evaluates every rule against a batch of alerts and commits, in ONE transaction, the
// incidents it opens or resolves, the actions it plans and the audit rows that explain why; the
// caller (the bus consumer) acks the batch only after that commit. Everything after the commit
// happens from rows: the executor claims runnable actions with FOR UPDATE SKIP LOCKED, runs each
// down the guards, runs the handler under a lease and records the outcome; `for` timers are rows
// claimed the same way. Any number of replicas may run Process, the executor and the timers against
// one database: unique keys (incident = rule, fingerprint, startsAt; action = incident, phase,
// step) make every duplicate a no-op, and a running action whose lease expires becomes unknown
// instead of being run again.
//
// The guards (DESIGN.md §2) are one ordered pipeline, written in one place: the variable pipeline
// in guards.go. In order: the action's incident or rule gone (cancelled), the kill switch, the
// cooldown per (rule, target), the storm guard (targets per rule), the circuit breaker per
// (handler, scope), building the action (bad_param), a drill's page (drill.go: redirected to
// drills.page or not sent), the storm guard's workload share, the staleness of the evidence
// (safety.max_alert_age, re-confirmed by the handler's Check), the budgets (a drill's: the drills
// budget only), approval, the dry-run or shadow cut-off, and the execution slot. The first guard that
// does not let an action pass decides; the cooldown, the breaker's trial, the budgets and the slot
// are claimed in that order when the action starts, and a refusal takes back the claims before it.
// Approval decisions go through Engine.Decide, which applies the approval policy (Approvals) and
// has the store record the decision. The engine reads and writes the database through Store: the
// *store.Store methods it uses.
//
// A rule's `verify` (verify.go) keeps the last step of its actions `verifying` after its handler
// succeeded, without a lease or a slot, until its condition holds (succeeded) or its deadline
// passes (failed, not_recovered: the breaker counts it and the rule escalates); the verify pass
// runs with the timers.
package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"path"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/vocab"
)

// Options configure an Engine.
type Options struct {
	// Store is the database (*store.Store): the engine uses the methods Store lists.
	Store    Store
	Handlers *handlers.Registry
	Rules    *rules.Set
	// Owner names this replica on running actions (hostname + pid + random suffix).
	Owner string
	// DryRun records dry_run for every action and never calls Do.
	DryRun bool
	// Paused (safety.paused) skips disruptive actions with reason paused; notify actions still run.
	// The runtime kill switch (a row, POST /api/v1/pause) builds on this guard.
	Paused bool
	// MaxAlertAge: an action whose alert was last received longer ago is skipped (reason stale)
	// unless the handler's Check re-confirms the condition. Zero disables the check.
	MaxAlertAge time.Duration
	// MaxConcurrent bounds the actions this replica runs at once (default 8).
	MaxConcurrent int
	// ActionTimeout bounds one handler call when neither rule nor handler says (default 5m).
	ActionTimeout time.Duration
	// MaxParamsBytes bounds an action's rendered params, as JSON (default 64 KiB): labels are the
	// sender's, and an action over it fails at planning with reason bad_param.
	MaxParamsBytes int
	// Budgets are shared by all rules: each caps the disruptive actions of the handlers it matches.
	// A drill's actions never spend them: they spend DrillBudget.
	Budgets []Budget
	// DrillBudget caps the disruptive actions of drills (their incident's alert carries
	// alert.DrillLabel), over all drills: drills.budget. Its name is always "drills", its match
	// "*" and its scope global; a zero Max or Window takes the default, 10 per 1h.
	DrillBudget Budget
	// DrillPage (drills.page) is the Slack channel a drill's page.slack actions post to instead of
	// their own; "": they are not sent. A drill's other notify actions are never sent (dry_run,
	// reason drill), unless the drill says page: real (alert.DrillPageLabel).
	DrillPage string
	// StormMaxTargets > 0 turns the storm guard on: a rule whose disruptive actions planned within
	// StormWindow (default 5m) touch more than StormMaxTargets distinct targets acts on none of them.
	StormMaxTargets int
	StormWindow     time.Duration
	// StormMaxWorkloadFraction > 0 bounds, for actions that touch a member of a workload
	// (handlers.WorkloadMember), the share of that workload's members a rule acts on within
	// StormWindow.
	StormMaxWorkloadFraction float64
	// BreakerFailures consecutive failures of disruptive actions of one (handler, scope) open its
	// circuit breaker for BreakerOpenFor (defaults 3 and 5m); then one trial runs, cluster-wide.
	BreakerFailures int
	BreakerOpenFor  time.Duration
	// ApprovalTTL: an action awaiting approval longer than this expires and escalates (0: never).
	ApprovalTTL time.Duration
	// Lease is how long a running action's lease lasts without renewal (default 30s).
	Lease time.Duration
	// Poll is how often the executor and the timers look for work besides being kicked (default 250ms).
	Poll time.Duration
	// PauseWatch is how often a replica running disruptive actions re-reads the kill switch to
	// interrupt them when another replica paused (default 1s); a pause in this process kicks it.
	PauseWatch time.Duration
	// ClaimBatch bounds the actions claimed per executor pass (default 512); a pass that runs what
	// passes the guards claims at most the free execution slots and a margin (claimLimit).
	ClaimBatch int
	// Executors is how many executor passes run concurrently on this replica (default 2): claims
	// use SKIP LOCKED, so they share the work like replicas do.
	Executors  int
	Now        func() time.Time
	Logger     *slog.Logger
	Registerer prometheus.Registerer
	// Panics counts and logs recovered panics (shared with the other units of an App); nil: the
	// engine registers its own on Registerer.
	Panics *Panics
}

// Engine evaluates rules, plans and executes actions.
type Engine struct {
	o       Options
	st      Store
	rules   atomic.Pointer[rules.Set]
	now     func() time.Time
	log     *slog.Logger
	m       *metrics
	slots   chan struct{}
	kick    chan struct{} // wakes an executor loop
	running sync.Map      // action id → struct{}: leases this replica renews
	panics  *Panics
	wg      sync.WaitGroup

	// live is what Reconfigure swaps: the options a reload changes (handlers, guards' settings)
	// and each handler's Spec, read once per handler registry (reconfigure.go). e.o keeps the
	// options fixed at New.
	live   atomic.Pointer[live]
	liveMu sync.Mutex // serializes Reconfigure

	// inflight: action id → *inFlight, the handlers running here, interrupted by a pause or a
	// lost lease (interrupt.go).
	inflight   sync.Map
	pauseNudge chan struct{}
	// kickTimers wakes the timers loop: a kick of its own, so that it never takes the one meant
	// for an executor.
	kickTimers chan struct{}
	// verifyWhen: the rules with a verify `when`; verifyDirty: a batch was committed since the
	// verify pass last judged their verifying actions (verify.go).
	verifyWhen  atomic.Pointer[[]string]
	verifyDirty atomic.Bool
	// deferred holds the compiled deferred params of chained steps (chain.go).
	deferred deferredCache
}

// New returns an engine; call Run to start the executor and timers.
func New(o Options) (*Engine, error) {
	if o.Store == nil || o.Handlers == nil || o.Rules == nil {
		return nil, fmt.Errorf("engine: store, handlers and rules are required")
	}
	o = o.withDefaults()
	e := &Engine{
		o: o, st: o.Store, now: o.Now, log: o.Logger,
		slots: make(chan struct{}, o.MaxConcurrent),
		kick:  make(chan struct{}, 1),

		kickTimers: make(chan struct{}, 1),
		pauseNudge: make(chan struct{}, 1),
	}
	e.live.Store(newLive(o))
	m, err := newMetrics(o.Registerer, o.Handlers.Names())
	if err != nil {
		return nil, err
	}
	e.m = m
	if e.panics = o.Panics; e.panics == nil {
		if e.panics, err = NewPanics(o.Registerer, o.Logger); err != nil {
			return nil, err
		}
	}
	if o.Paused {
		m.paused.Set(1)
	}
	e.SetRules(o.Rules)
	return e, nil
}

// withDefaults fills in the defaults the Options fields document.
func (o Options) withDefaults() Options {
	orDefault := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	orDefault(&o.ActionTimeout, 5*time.Minute)
	orDefault(&o.Lease, 30*time.Second)
	orDefault(&o.Poll, 250*time.Millisecond)
	orDefault(&o.PauseWatch, time.Second)
	orDefault(&o.StormWindow, 5*time.Minute)
	orDefault(&o.BreakerOpenFor, 5*time.Minute)
	o.MaxConcurrent = cmp.Or(max(o.MaxConcurrent, 0), 8)
	o.BreakerFailures = cmp.Or(max(o.BreakerFailures, 0), 3)
	o.Executors = cmp.Or(max(o.Executors, 0), 2)
	o.ClaimBatch = cmp.Or(max(o.ClaimBatch, 0), 512)
	o.MaxParamsBytes = cmp.Or(max(o.MaxParamsBytes, 0), 64<<10)
	o.Owner = cmp.Or(o.Owner, "responder")
	o.DrillBudget = drillBudgetDefaults(o.DrillBudget)
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Registerer == nil {
		o.Registerer = prometheus.NewRegistry()
	}
	return o
}

// SetRules swaps the rule set atomically (reload). Incidents of rules that disappeared keep their
// rows; their timers and escalations are dropped with an audit entry.
func (e *Engine) SetRules(s *rules.Set) {
	e.rules.Store(s)
	e.noteVerify(s)
	for _, r := range s.Rules {
		e.m.ruleMatches.WithLabelValues(r.Name)
		e.m.ruleErrors.WithLabelValues(r.Name)
		for _, phase := range [][]*rules.Action{r.Actions, r.Escalate, r.OnResolved} {
			for _, a := range phase {
				for _, o := range vocab.Outcomes { // the final states: responder_actions_total's outcome
					e.m.actions.WithLabelValues(r.Name, a.Handler, string(o))
				}
			}
		}
	}
}

// Rules returns the rule set in force.
func (e *Engine) Rules() *rules.Set { return e.rules.Load() }

// Kick wakes the executor (new planned actions), the timers and the kill-switch watch (a pause
// committed in this process interrupts the running disruptive actions at once).
func (e *Engine) Kick() {
	e.kickExecutor()
	nudge(e.kickTimers)
	e.nudgePauseWatch()
}

// kickExecutor wakes an executor loop: an action finished, so its slot (and, for a disruptive
// action, its target) is free for the next one at once rather than at the next poll.
func (e *Engine) kickExecutor() { nudge(e.kick) }

// nudge sends on a wake-up channel of capacity one without blocking: wake-ups that come while
// one is pending fold into it.
func nudge(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// Run runs the executor, the lease renewer and the timers until ctx is done, then waits up to
// drain for running actions to finish. Actions still running after that keep their state; their
// lease expires and another replica records them as unknown.
func (e *Engine) Run(ctx context.Context, drain time.Duration) error {
	// Handler calls and lease renewal outlive ctx: they stop after the drain.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	renewed := make(chan struct{})
	go func() { defer close(renewed); e.renewLeases(runCtx) }()
	var loops sync.WaitGroup
	for range e.o.Executors {
		loops.Add(1)
		go func() {
			defer loops.Done()
			e.loop(ctx, "executor", e.kick, func(c context.Context) (int, error) { return e.execute(c, runCtx) })
		}()
	}
	loops.Add(1)
	go func() { defer loops.Done(); e.loop(ctx, "timers", e.kickTimers, e.FireDueTimers) }()
	loops.Wait()
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(drain):
		e.log.Warn("shutdown: actions still running after the drain bound; their leases will expire", "drain", drain)
		cancelRuns()
		<-done
	}
	cancelRuns()
	<-renewed
	return nil
}

// loop runs pass until ctx is done: again at once while it makes progress, else at the next poll
// or when kicked.
func (e *Engine) loop(ctx context.Context, name string, kick <-chan struct{}, pass func(context.Context) (int, error)) {
	t := time.NewTicker(e.o.Poll)
	defer t.Stop()
	for {
		n, err := e.safePass(ctx, name, pass)
		if err != nil && ctx.Err() == nil {
			e.log.Warn(name+" pass failed", "err", err)
		}
		if n > 0 && err == nil {
			continue // more work may be waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
		}
	}
}

// renewLeases extends the leases of this replica's running actions every Lease/3, and watches
// the kill switch for them, until ctx ends.
func (e *Engine) renewLeases(ctx context.Context) {
	watched := make(chan struct{})
	go func() { defer close(watched); e.watchPause(ctx) }()
	defer func() { <-watched }()
	t := time.NewTicker(e.o.Lease / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		e.renewOnce(ctx)
	}
}

// Budget caps disruptive actions whose handler matches Match (a glob) to Max per Window, counted
// per scope (Per "namespace" or "cluster": the action's scope) or once for all (Per "global").
type Budget struct {
	Name   string
	Match  string
	Per    string
	Max    int
	Window time.Duration
}

// key is the budget's counter for an action.
func (b Budget) key(scope string) string {
	if b.Per == "global" {
		return ""
	}
	return scope
}

// matches reports whether the budget applies to a handler.
func (b Budget) matches(handler string) bool {
	ok, _ := path.Match(b.Match, handler)
	return ok
}

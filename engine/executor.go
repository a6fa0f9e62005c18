package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
)

// Skip reasons decided by the guards that exist so far.
const (
	ReasonPaused    = "paused"
	ReasonCooldown  = "cooldown"
	ReasonStale     = "stale"
	ReasonCancelled = "cancelled"
	ReasonDryRun    = "dry_run"
	ReasonShadow    = "shadow"
	ReasonBudget    = "budget_exhausted"
	ReasonBreaker   = "breaker_open"
	ReasonStorm     = "storm_blocked"
)

// escalates reports whether an action that ended in state/reason runs the rule's escalation
// (DESIGN.md §4: failed, unknown, expired and skipped{breaker_open, budget_exhausted, storm_blocked}).
func escalates(state, reason string) bool {
	switch state {
	case store.ActionFailed, store.ActionUnknown, store.ActionExpired:
		return true
	case store.ActionSkipped:
		return reason == "breaker_open" || reason == "budget_exhausted" || reason == "storm_blocked"
	}
	return false
}

// passes reports whether a finished step lets the next one run.
func passes(state string) bool { return state == store.ActionSucceeded || state == store.ActionDryRun }

// ExecuteOnce runs one executor pass: it expires dead leases, claims runnable actions, applies the
// guards, records every refusal and dry run, and starts the handlers of the actions that may run.
// It returns how many actions it decided on. Tests call it directly; Run calls it in a loop.
func (e *Engine) ExecuteOnce(ctx context.Context) (int, error) { return e.execute(ctx, ctx) }

type decision struct {
	c       store.Claimed
	outcome store.Outcome
	run     bool
	trial   bool            // runs as the half-open trial of its breaker
	act     handlers.Action // built once by decide, run as is
	verdict string          // dry run: what Check and the guards said
}

func (e *Engine) execute(ctx, runCtx context.Context) (int, error) {
	set := e.rules.Load()
	type toStart struct {
		c   store.Claimed
		act handlers.Action
	}
	var toRun []toStart
	var finals []decision
	var p planner
	// Slots are reserved (non-blocking) before an action is marked running, and released if the
	// transaction does not commit: an action is running in the database only while this replica
	// holds a slot for it and renews its lease.
	reserved := 0
	release := func() {
		for _, r := range toRun {
			e.running.Delete(r.c.ID)
		}
		for ; reserved > 0; reserved-- {
			<-e.slots
		}
	}
	err := e.st.InTx(ctx, func(tx pgx.Tx) error {
		release()
		toRun, finals = nil, nil
		now := e.now()
		p = planner{ctx: ctx, e: e, set: set, now: now, firing: noneFiring{}}
		expired, err := e.st.ExpireLeasesTx(ctx, tx, now, e.o.Lease)
		if err != nil {
			return err
		}
		if e.o.ApprovalTTL > 0 {
			stale, err := e.st.ExpireApprovalsTx(ctx, tx, now, e.o.ApprovalTTL)
			if err != nil {
				return err
			}
			expired = append(expired, stale...)
		}
		for _, c := range expired {
			if err := e.feedBreaker(ctx, tx, &p, c.Action, c.State, c.Reason); err != nil {
				return err
			}
			finals = append(finals, decision{c: c, outcome: store.Outcome{ID: c.ID, State: c.State, Reason: c.Reason, Error: c.Error}})
			if err := e.afterStep(ctx, tx, &p, c, c.State, c.Reason); err != nil {
				return err
			}
		}
		// The kill switch, read in the claiming transaction (FOR SHARE): no action starts after a
		// pause committed. Approved actions are claimed here too, so it is re-checked before Do.
		pause, err := e.st.PauseTx(ctx, tx)
		if err != nil {
			return err
		}
		paused := e.o.Paused || pause.Active(now)
		e.m.paused.Set(boolFloat(paused))
		claimed, err := e.st.ClaimRunnableTx(ctx, tx, now, e.o.ClaimBatch)
		if err != nil {
			return err
		}
		if len(claimed) == 0 {
			return p.flushAudit(ctx, tx, finals)
		}
		var keys []store.CooldownKey
		for _, c := range claimed {
			if c.Phase == store.PhaseActions {
				keys = append(keys, store.CooldownKey{Rule: c.Rule, Target: c.Target})
			}
		}
		cool, err := e.st.CooldownsTx(ctx, tx, keys, now)
		if err != nil {
			return err
		}
		var bkeys []store.BreakerKey
		seenKey := map[store.BreakerKey]bool{}
		for _, c := range claimed {
			k := store.BreakerKey{Handler: c.Handler, Scope: c.Scope}
			if c.Class == string(handlers.ClassDisruptive) && !seenKey[k] {
				seenKey[k] = true
				bkeys = append(bkeys, k)
			}
		}
		breakers, err := e.st.BreakersTx(ctx, tx, bkeys)
		if err != nil {
			return err
		}
		var stormy map[string]int
		if e.o.StormMaxTargets > 0 {
			var rs []string
			seenRule := map[string]bool{}
			for _, c := range claimed {
				if c.Class == string(handlers.ClassDisruptive) && c.Phase == store.PhaseActions && !seenRule[c.Rule] {
					seenRule[c.Rule] = true
					rs = append(rs, c.Rule)
				}
			}
			if stormy, err = e.st.StormyRulesTx(ctx, tx, rs, now.Add(-e.o.StormWindow), e.o.StormMaxTargets); err != nil {
				return err
			}
		}
		busy := map[string]bool{}
		var outs []store.Outcome
		var decided []decision
		for _, c := range claimed {
			d := e.decide(ctx, tx, set, c, now, cool, paused, breakers, stormy)
			if !d.run {
				d.outcome.At = now
				outs = append(outs, d.outcome)
				decided = append(decided, d)
				continue
			}
			if busy[c.Target] {
				continue // one at a time per target: it waits for a later pass
			}
			select {
			case e.slots <- struct{}{}:
				reserved++
			default:
				continue // no free slot: it waits (execution slots never refuse)
			}
			started, reason, refusal, err := e.start(ctx, tx, set, c, now, d.trial)
			if err != nil {
				return err
			}
			if !started {
				<-e.slots
				reserved--
				if refusal != "" { // a budget or the breaker refused it: skipped, and it escalates
					d.run = false
					d.outcome.State, d.outcome.Reason, d.outcome.Error, d.outcome.At = store.ActionSkipped, reason, refusal, now
					outs = append(outs, d.outcome)
					decided = append(decided, d)
				}
				continue
			}
			busy[c.Target] = true
			e.running.Store(c.ID, struct{}{})
			p.audit(store.AuditInsert{IncidentID: c.IncidentID, ActionID: c.ID, Kind: store.AuditAction, Actor: e.o.Owner,
				Reason: "started", RuleHash: c.RuleHash, Detail: map[string]any{"handler": c.Handler, "target": c.Target}})
			toRun = append(toRun, toStart{c, d.act})
		}
		if _, err := e.st.FinishActionsTx(ctx, tx, e.o.Owner, outs); err != nil {
			return err
		}
		for _, d := range decided {
			if err := e.afterStep(ctx, tx, &p, d.c, d.outcome.State, d.outcome.Reason); err != nil {
				return err
			}
		}
		finals = append(finals, decided...)
		return p.flushAudit(ctx, tx, finals)
	})
	if err != nil {
		release()
		return 0, err
	}
	p.committed()
	for _, d := range finals {
		e.m.actions.WithLabelValues(d.c.Rule, d.c.Handler, d.outcome.State).Inc()
	}
	for _, r := range toRun {
		e.wg.Add(1)
		go e.run(runCtx, r.c, r.act)
	}
	// Count only what was decided or started: actions waiting for a slot are not progress.
	return len(finals) + len(toRun), nil
}

// start spends the budgets of a disruptive action (the last guard, so a refusal never spends),
// marks it running under this replica's lease and starts its rule's cooldown, all in a savepoint.
// It reports false with a refusal when a budget is exhausted, and false without one, leaving the
// action planned, when another executor or replica got the target first; the rest of the pass is
// unaffected either way.
func (e *Engine) start(ctx context.Context, tx pgx.Tx, set *rules.Set, c store.Claimed, now time.Time, trial bool) (bool, string, string, error) {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return false, "", "", err
	}
	if trial {
		ok, err := e.st.ClaimBreakerTrialTx(ctx, sp, store.BreakerKey{Handler: c.Handler, Scope: c.Scope}, e.o.BreakerOpenFor, now, c.ID)
		if err != nil {
			_ = sp.Rollback(ctx)
			return false, "", "", err
		}
		if !ok {
			_ = sp.Rollback(ctx)
			return false, ReasonBreaker, "another action is the breaker's half-open trial", nil
		}
		if err := e.halfOpenMachine(ctx, sp, store.BreakerKey{Handler: c.Handler, Scope: c.Scope}, now); err != nil {
			_ = sp.Rollback(ctx)
			return false, "", "", err
		}
	}
	if c.Class == string(handlers.ClassDisruptive) {
		for _, b := range e.o.Budgets {
			if !b.matches(c.Handler) {
				continue
			}
			ok, err := e.st.SpendBudgetTx(ctx, sp, b.Name, b.key(c.Scope), b.Max, b.Window, now, c.ID)
			if err != nil {
				_ = sp.Rollback(ctx)
				return false, "", "", err
			}
			if !ok {
				_ = sp.Rollback(ctx)
				return false, ReasonBudget, fmt.Sprintf("budget %s: %d %s actions per %s already spent for %q", b.Name, b.Max, b.Match, b.Window, b.key(c.Scope)), nil
			}
		}
	}
	if err := e.st.StartActionTx(ctx, sp, c.ID, e.o.Owner, now, now.Add(e.o.Lease)); err != nil {
		_ = sp.Rollback(ctx)
		if store.IsTargetBusy(err) {
			return false, "", "", nil
		}
		return false, "", "", err
	}
	if r := set.Rule(c.Rule); r != nil && r.Cooldown > 0 && c.Phase == store.PhaseActions && c.Attempt == 0 {
		if err := e.st.SetCooldownTx(ctx, sp, store.CooldownKey{Rule: c.Rule, Target: c.Target}, now.Add(r.Cooldown)); err != nil {
			_ = sp.Rollback(ctx)
			return false, "", "", err
		}
	}
	return true, "", "", sp.Commit(ctx)
}

// decide applies the guards, in DESIGN.md order, to one claimed action.
func (e *Engine) decide(ctx context.Context, tx pgx.Tx, set *rules.Set, c store.Claimed, now time.Time, cool map[store.CooldownKey]time.Time, paused bool, breakers map[store.BreakerKey]store.Breaker, stormy map[string]int) decision {
	d := decision{c: c, outcome: store.Outcome{ID: c.ID}}
	skip := func(reason, msg string) decision {
		d.outcome.State, d.outcome.Reason, d.outcome.Error = store.ActionSkipped, reason, msg
		return d
	}
	if c.IncidentState == store.IncidentResolved && c.Phase != store.PhaseOnResolved && c.Phase != store.PhaseResolve {
		return skip(ReasonCancelled, "the incident resolved")
	}
	if set.Rule(c.Rule) == nil {
		return skip(ReasonCancelled, "the rule no longer exists")
	}
	if paused && c.Class == string(handlers.ClassDisruptive) {
		return skip(ReasonPaused, "responder is paused")
	}
	// A retry (a page the pager did not take) is never blocked by its own first attempt's cooldown.
	if until, ok := cool[store.CooldownKey{Rule: c.Rule, Target: c.Target}]; ok && c.Phase == store.PhaseActions && c.Attempt == 0 {
		return skip(ReasonCooldown, "cooldown until "+until.UTC().Format(time.RFC3339))
	}
	// The storm guard: an empty or wildcard target is never acted on, and a rule touching too many
	// targets at once acts on none of them.
	stormVerdict := ""
	if c.Class == string(handlers.ClassDisruptive) {
		if t := strings.TrimSpace(c.Target); t == "" || strings.Contains(t, "*") {
			return skip(ReasonStorm, "empty or wildcard target "+strconv.Quote(c.Target))
		}
		if n, ok := stormy[c.Rule]; ok && c.Phase == store.PhaseActions {
			stormVerdict = fmt.Sprintf("rule %s would touch %d targets within %s (safety.storm_guard.max_targets %d)", c.Rule, n, e.o.StormWindow, e.o.StormMaxTargets)
			if !(e.o.DryRun || c.Mode == "shadow") {
				return skip(ReasonStorm, stormVerdict)
			}
		}
	}
	// The circuit breaker of (handler, scope): open refuses; once its open period is over, one
	// action (cluster-wide, claimed in start) runs as the trial.
	breakerVerdict := ""
	if b, ok := breakers[store.BreakerKey{Handler: c.Handler, Scope: c.Scope}]; ok && c.Class == string(handlers.ClassDisruptive) {
		switch {
		case b.State == store.BreakerOpen && b.OpenedAt != nil && now.Before(b.OpenedAt.Add(e.o.BreakerOpenFor)):
			breakerVerdict = "breaker open since " + b.OpenedAt.UTC().Format(time.RFC3339)
		case b.State == store.BreakerHalfOpen && b.TrialActionID != nil && *b.TrialActionID != c.ID:
			breakerVerdict = "breaker half-open: another action is its trial"
		case b.State != store.BreakerClosed:
			d.trial = true
		}
	}
	dryRun := e.o.DryRun || c.Mode == "shadow"
	if breakerVerdict != "" && !dryRun {
		return skip(ReasonBreaker, breakerVerdict)
	}
	act, buildErr := e.buildStored(c)
	if buildErr != nil {
		d.outcome.State, d.outcome.Reason, d.outcome.Error = store.ActionFailed, handlers.ReasonBadParam, buildErr.Error()
		return d
	}
	d.act = act
	// The storm guard's second bound: the share of one workload's members a rule acts on.
	if m, ok := act.(handlers.WorkloadMember); ok && e.o.StormMaxWorkloadFraction > 0 &&
		c.Class == string(handlers.ClassDisruptive) && c.Phase == store.PhaseActions {
		v, err := e.workloadVerdict(ctx, tx, c, m, now)
		if err != nil {
			v = err.Error()
		}
		if v != "" {
			stormVerdict = strings.TrimPrefix(stormVerdict+"; "+v, "; ")
			if !(e.o.DryRun || c.Mode == "shadow") {
				return skip(ReasonStorm, stormVerdict)
			}
		}
	}
	// A notification already tried once (the pager was down) is delivered late rather than never.
	retrying := c.Class == string(handlers.ClassNotify) && c.Attempt > 0
	stale := e.o.MaxAlertAge > 0 && now.Sub(c.EvidenceAt) > e.o.MaxAlertAge && !retrying
	dry := e.o.DryRun || c.Mode == "shadow"
	if stale || dry {
		cctx, cancel := context.WithTimeout(ctx, min(time.Duration(c.TimeoutMS)*time.Millisecond, 10*time.Second))
		err := act.Check(cctx, c.Alert)
		cancel()
		switch {
		case stale && err != nil:
			return skip(ReasonStale, "evidence from "+c.EvidenceAt.UTC().Format(time.RFC3339)+" is older than safety.max_alert_age; "+err.Error())
		case dry:
			d.outcome.State, d.outcome.Reason = store.ActionDryRun, ReasonDryRun
			if !e.o.DryRun {
				d.outcome.Reason = ReasonShadow
			}
			d.verdict = "check: ok"
			if err != nil {
				d.verdict = "check: " + err.Error()
			}
			for _, v := range []string{stormVerdict, breakerVerdict, e.budgetVerdict(ctx, tx, c, now)} {
				if v != "" {
					d.verdict += "; " + v
				}
			}
			d.outcome.Result = "would run " + c.Handler + " on " + c.Target + " (" + d.verdict + ")"
			return d
		}
	}
	d.run = true
	return d
}

// workloadVerdict refuses an action when its rule's actions within the storm window would touch
// more than safety.storm_guard.max_workload_fraction of its target workload's members (at least one
// member is always allowed: the handlers' own floors, such as min_healthy, protect small
// workloads). A workload whose size cannot be read is refused too: the guard fails closed.
func (e *Engine) workloadVerdict(ctx context.Context, tx pgx.Tx, c store.Claimed, m handlers.WorkloadMember, now time.Time) (string, error) {
	n, err := e.st.WorkloadMembersTx(ctx, tx, c.Rule, c.Target, now.Add(-e.o.StormWindow))
	if err != nil {
		return "", err
	}
	if n <= 1 {
		return "", nil
	}
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	size, err := m.WorkloadSize(sctx)
	cancel()
	if err != nil {
		return "", fmt.Errorf("the size of workload %s is unknown (%v): the storm guard refuses", c.Target, err)
	}
	allowed := max(1, int(e.o.StormMaxWorkloadFraction*float64(size)))
	if n > allowed {
		return fmt.Sprintf("rule %s would touch %d of the %d members of %s within %s (safety.storm_guard.max_workload_fraction %g allows %d)",
			c.Rule, n, size, c.Target, e.o.StormWindow, e.o.StormMaxWorkloadFraction, allowed), nil
	}
	return "", nil
}

// buildStored builds an action from its stored (rendered) params.
func (e *Engine) buildStored(c store.Claimed) (handlers.Action, error) {
	h, ok := e.o.Handlers.Get(c.Handler)
	if !ok {
		return nil, errors.New("handler " + c.Handler + " is not registered")
	}
	return h.Build(handlers.Params(maps.Clone(c.Params)))
}

// afterStep stops the later steps of a step that did not pass and plans the escalation.
func (e *Engine) afterStep(ctx context.Context, tx pgx.Tx, p *planner, c store.Claimed, state, reason string) error {
	if passes(state) {
		return nil
	}
	if err := e.st.CancelLaterStepsTx(ctx, tx, c.IncidentID, c.Phase, c.Step, p.now); err != nil {
		return err
	}
	if c.Phase != store.PhaseActions || !escalates(state, reason) {
		return nil
	}
	if reason == ReasonStorm { // the incident is suppressed; a storm escalates once, not once per target
		if err := e.st.SuppressIncidentTx(ctx, tx, c.IncidentID, p.now); err != nil {
			return err
		}
		first, err := e.st.ClaimStormEscalationTx(ctx, tx, c.Rule, p.now, e.o.StormWindow)
		if err != nil || !first {
			return err
		}
	}
	rule := p.set.Rule(c.Rule)
	if rule == nil {
		return nil
	}
	p.plan(c.IncidentID, rule, store.PhaseEscalate, c.Alert, p.now)
	return nil
}

// flushAudit records one audit row per final decision, then the planned escalations.
func (p *planner) flushAudit(ctx context.Context, tx pgx.Tx, ds []decision) error {
	for _, d := range ds {
		detail := map[string]any{"handler": d.c.Handler, "target": d.c.Target, "state": d.outcome.State}
		if d.outcome.Error != "" {
			detail["error"] = d.outcome.Error
		}
		if d.verdict != "" {
			detail["verdict"] = d.verdict
		}
		p.audit(store.AuditInsert{IncidentID: d.c.IncidentID, ActionID: d.c.ID, Kind: store.AuditAction,
			Actor: p.e.o.Owner, Reason: d.outcome.Reason, RuleHash: d.c.RuleHash, Detail: detail})
	}
	return p.flush(ctx, tx)
}

// run calls the handler of one started action and records its outcome.
func (e *Engine) run(ctx context.Context, c store.Claimed, act handlers.Action) {
	defer e.wg.Done()
	defer func() { <-e.slots; e.running.Delete(c.ID); e.Kick() }()
	e.m.inFlight.WithLabelValues(c.Handler).Inc()
	defer e.m.inFlight.WithLabelValues(c.Handler).Dec()

	out := store.Outcome{ID: c.ID, State: store.ActionSucceeded}
	start := time.Now()
	ictx, stop := e.interruptible(ctx, c)
	actx := handlers.WithIncident(handlers.WithIdempotencyKey(ictx, idempotencyKey(c.ID)), c.IncidentID)
	actx, cancel := context.WithTimeout(actx, time.Duration(c.TimeoutMS)*time.Millisecond)
	res, err := act.Do(actx, c.Alert)
	cancel()
	interrupted := stop()
	out.Result = res.Detail
	if err != nil && interrupted == nil && ctx.Err() != nil {
		// Shutdown cut the call short: leave it running; its lease expires and it becomes unknown.
		e.log.Warn("action interrupted by shutdown", "action_id", c.ID, "handler", c.Handler)
		return
	}
	e.m.actionDuration.WithLabelValues(c.Handler).Observe(time.Since(start).Seconds())
	switch {
	case err != nil && interrupted != nil:
		// A pause or a lost lease stopped it: recorded with that reason, never retried.
		out = interruptedOutcome(out, err, interrupted)
	case err != nil:
		out.State, out.Reason, out.Error = store.ActionFailed, handlers.ReasonOf(err), err.Error()
		if e.requeue(ctx, c, out) {
			return
		}
	}
	e.log.Info("action finished", "action_id", c.ID, "incident_id", c.IncidentID, "rule", c.Rule, "handler", c.Handler,
		"target", c.Target, "state", out.State, "reason", out.Reason, "duration", time.Since(start))
	e.record(ctx, c, out)
}

// record writes an outcome, retrying transient store errors until the lease would expire anyway.
// An action that is no longer this replica's (another replica expired its lease and recorded it
// unknown, and escalated) keeps that row: this replica only audits what it saw (reason
// lease_lost), so the trail tells what the handler really did.
func (e *Engine) record(ctx context.Context, c store.Claimed, out store.Outcome) {
	lost := false
	op := func() (struct{}, error) {
		now := e.now()
		out.At = now
		lost = false
		err := e.st.InTx(ctx, func(tx pgx.Tx) error {
			p := planner{ctx: ctx, e: e, set: e.rules.Load(), now: now, firing: noneFiring{}}
			ids, err := e.st.FinishActionsTx(ctx, tx, e.o.Owner, []store.Outcome{out})
			if err != nil {
				return err
			}
			if len(ids) == 0 {
				lost = true
				seen := out
				seen.Reason = handlers.ReasonLeaseLost
				seen.Error = strings.TrimSuffix("another replica recorded this action (its lease was no longer ours); here the handler ended "+
					out.State+": "+out.Error, ": ")
				return p.flushAudit(ctx, tx, []decision{{c: c, outcome: seen}})
			}
			if err := e.feedBreaker(ctx, tx, &p, c.Action, out.State, out.Reason); err != nil {
				return err
			}
			if err := e.afterStep(ctx, tx, &p, c, out.State, out.Reason); err != nil {
				return err
			}
			return p.flushAudit(ctx, tx, []decision{{c: c, outcome: out}})
		})
		if err != nil && !store.IsTransient(err) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}
	// The outcome is recorded even when shutdown cancelled ctx meanwhile: it happened.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.Lease)
	defer cancel()
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(e.o.Lease))
	switch {
	case err != nil:
		e.log.Error("could not record action outcome; it will become unknown when its lease expires",
			"action_id", c.ID, "state", out.State, "err", err)
	case lost:
		e.log.Warn("action is no longer ours (another replica expired its lease and recorded it); audited what this replica saw",
			"action_id", c.ID, "state", out.State, "reason", out.Reason)
	default:
		e.m.actions.WithLabelValues(c.Rule, c.Handler, out.State).Inc()
	}
}

func idempotencyKey(id int64) string {
	return "responder-action-" + itoa(id)
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Notify actions that fail for a transient reason (the pager is down) are tried again from the
// store, with backoff, up to notifyAttempts times: a pager outage delays a page, it does not lose it.
const (
	notifyAttempts    = 12
	notifyBackoffBase = 30 * time.Second
	notifyBackoffCap  = 10 * time.Minute
)

// requeue puts a failed notify action back to planned for a later attempt; it reports whether it did.
func (e *Engine) requeue(ctx context.Context, c store.Claimed, out store.Outcome) bool {
	transient := out.Reason == handlers.ReasonServerError || out.Reason == handlers.ReasonTimeout
	attempt := c.Attempt + 1 // StartActionTx counted this one
	if c.Class != string(handlers.ClassNotify) || !transient || attempt >= notifyAttempts {
		return false
	}
	delay := min(notifyBackoffBase<<(attempt-1), notifyBackoffCap)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.Lease)
	defer cancel()
	now := e.now()
	lost := false
	err := e.st.InTx(ctx, func(tx pgx.Tx) error {
		ok, err := e.st.RequeueActionTx(ctx, tx, e.o.Owner, c.ID, now.Add(delay), out.Reason, out.Error)
		if err != nil || !ok {
			lost = !ok
			return err
		}
		return e.st.AuditTx(ctx, tx, []store.AuditInsert{{At: now, IncidentID: c.IncidentID, ActionID: c.ID, Kind: store.AuditAction,
			Actor: e.o.Owner, Reason: "retry_scheduled", RuleHash: c.RuleHash,
			Detail: map[string]any{"handler": c.Handler, "attempt": attempt, "retry_at": now.Add(delay), "error": out.Error}}})
	})
	if err != nil {
		e.log.Warn("could not requeue a notification; recording it failed", "action_id", c.ID, "err", err)
		return false
	}
	if lost {
		e.log.Warn("notification failed and is no longer ours (lease expired); another replica recorded it", "action_id", c.ID)
		return true
	}
	e.log.Warn("notification failed; will retry", "action_id", c.ID, "handler", c.Handler, "attempt", attempt, "retry_in", delay, "err", out.Error)
	return true
}

// budgetVerdict says, for a dry run, which budget would refuse the action (nothing is spent).
func (e *Engine) budgetVerdict(ctx context.Context, tx pgx.Tx, c store.Claimed, now time.Time) string {
	if c.Class != string(handlers.ClassDisruptive) {
		return ""
	}
	for _, b := range e.o.Budgets {
		if !b.matches(c.Handler) {
			continue
		}
		used, err := e.st.BudgetUsedTx(ctx, tx, b.Name, b.key(c.Scope), b.Window, now)
		if err == nil && used >= b.Max {
			return "budget " + b.Name + " exhausted"
		}
	}
	return ""
}

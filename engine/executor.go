package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// escalates reports whether an action that ended in state/reason runs the rule's escalation
// (DESIGN.md §4: failed, unknown, expired and skipped{breaker_open, budget_exhausted, storm_blocked}).
func escalates(state vocab.State, reason vocab.Reason) bool {
	switch state {
	case vocab.StateFailed, vocab.StateUnknown, vocab.StateExpired:
		return true
	case vocab.StateSkipped:
		return reason == vocab.ReasonBreaker || reason == vocab.ReasonBudget || reason == vocab.ReasonStorm
	}
	return false
}

// passes reports whether a finished step lets the next one run.
func passes(state vocab.State) bool {
	return state == vocab.StateSucceeded || state == vocab.StateDryRun
}

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
	// callout, when set, is a call to the handler's peer (Check, WorkloadSize) decide needs before
	// it can decide: the action waits for it, decided in a later, short transaction.
	callout *callout
}

// callout is what decide needs from a handler's peer; execute fetches it with no transaction
// open, so no row lock and not the kill switch's lock is held while a peer is slow.
type callout struct {
	c     store.Claimed
	act   handlers.Action
	mark  time.Time // the action's not_before while it is checked (store.MarkCheckingTx)
	size  bool      // WorkloadSize is wanted
	check bool      // Check is wanted
	done  bool
	// What the peer said.
	sizeN    int
	sizeErr  error
	checkErr error
}

// guards is what one pass read for the guards of the actions it claimed.
type guards struct {
	now      time.Time
	paused   bool
	cool     map[store.CooldownKey]time.Time
	breakers map[store.BreakerKey]store.Breaker
	stormy   map[string]int
}

// Bounds of the calls decide needs from a handler's peer, and how long an action is hidden from
// other claims while they run (then another executor may claim it: the checker is presumed dead).
const (
	calloutTimeout = 10 * time.Second
	calloutHold    = 3 * calloutTimeout
)

// execute is one executor pass: a short transaction decides and starts what needs no call to a
// handler's peer and marks the rest; their Check and WorkloadSize calls run with no transaction
// open; a second short transaction decides them, reading again everything that may have changed
// meanwhile (the kill switch, cooldowns, breakers, budgets).
func (e *Engine) execute(ctx, runCtx context.Context) (int, error) {
	n, pending, err := e.pass(ctx, runCtx, nil)
	if err != nil || len(pending) == 0 {
		return n, err
	}
	e.callOut(ctx, pending)
	m, _, err := e.pass(ctx, runCtx, pending)
	return n + m, err
}

type toStart struct {
	c   store.Claimed
	act handlers.Action
}

// passRun is what one executor transaction decided; it is reset when the transaction is retried.
type passRun struct {
	e        *Engine
	p        planner
	toRun    []toStart
	finals   []decision
	pending  []*callout
	reserved int // execution slots taken for toRun
}

// release gives back the slots of a transaction that did not commit. Slots are reserved
// (non-blocking) before an action is marked running: an action is running in the database only
// while this replica holds a slot for it and renews its lease.
func (r *passRun) release() {
	for _, t := range r.toRun {
		r.e.running.Delete(t.c.ID)
	}
	for ; r.reserved > 0; r.reserved-- {
		<-r.e.slots
	}
}

// pass runs one executor transaction over the runnable actions it claims or, when checked is not
// nil, over the checked actions it takes back. It returns how many actions it decided or started
// and the actions waiting for a callout.
func (e *Engine) pass(ctx, runCtx context.Context, checked []*callout) (int, []*callout, error) {
	set := e.rules.Load()
	r := &passRun{e: e}
	lk := &lookups{}
	committed := false
	defer func() {
		// A panic inside the transaction (recovered and counted by the pass's caller) must not
		// keep the execution slots it reserved: repeated panics would stall the executor.
		if !committed {
			if v := recover(); v != nil {
				r.release()
				panic(v)
			}
		}
	}()
	err := e.inPlanTx(ctx, lk, func(tx pgx.Tx) error {
		r.release()
		now := e.now()
		*r = passRun{e: e, p: planner{ctx: ctx, e: e, set: set, now: now, firing: noneFiring{}, lk: lk}}
		claimed, g, err := e.claim(ctx, tx, r, checked, now)
		if err != nil {
			return err
		}
		// The rules as of the claim: every claimed action was planned under a set stored before
		// it, so a reload that added its rule while this pass began is not read as "no rule".
		set = e.rules.Load()
		r.p.set = set
		if err := r.decideAll(ctx, tx, set, claimed, g, checked); err != nil {
			return err
		}
		return r.p.flushAudit(ctx, tx, r.finals)
	})
	if err != nil {
		r.release()
		committed = true
		return 0, nil, err
	}
	committed = true
	r.p.committed()
	for _, d := range r.finals {
		e.m.actions.WithLabelValues(d.c.Rule, d.c.Handler, string(d.outcome.State)).Inc()
	}
	for _, t := range r.toRun {
		e.wg.Add(1)
		go e.run(runCtx, t.c, t.act)
	}
	// Count only what was decided or started: actions waiting for a slot are not progress.
	return len(r.finals) + len(r.toRun), r.pending, nil
}

// claim expires dead leases and approvals (first pass only), reads the kill switch, claims the
// actions and reads their guards' state.
func (e *Engine) claim(ctx context.Context, tx pgx.Tx, r *passRun, checked []*callout, now time.Time) ([]store.Claimed, guards, error) {
	g := guards{now: now}
	if checked == nil {
		if err := e.expire(ctx, tx, r, now); err != nil {
			return nil, g, err
		}
	}
	// The kill switch, read in the claiming transaction (FOR SHARE): no action starts after a
	// pause committed. Approved actions are claimed here too, so it is re-checked before Do.
	pause, err := e.st.PauseTx(ctx, tx)
	if err != nil {
		return nil, g, err
	}
	g.paused = e.o.Paused || pause.Active(now)
	e.m.paused.Set(boolFloat(g.paused))
	var claimed []store.Claimed
	if checked == nil {
		claimed, err = e.st.ClaimRunnableTx(ctx, tx, now, e.o.ClaimBatch)
	} else {
		ids := make([]int64, len(checked))
		for i, co := range checked {
			ids[i] = co.c.ID
		}
		claimed, err = e.st.ReclaimCheckedTx(ctx, tx, ids, e.o.Owner, checked[0].mark)
	}
	if err != nil || len(claimed) == 0 {
		return nil, g, err
	}
	err = e.readGuards(ctx, tx, claimed, &g)
	return claimed, g, err
}

// expire turns running actions whose lease expired into unknown and expires stale approvals.
func (e *Engine) expire(ctx context.Context, tx pgx.Tx, r *passRun, now time.Time) error {
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
		if err := e.feedBreaker(ctx, tx, &r.p, c.Action, c.State, c.Reason); err != nil {
			return err
		}
		r.finals = append(r.finals, decision{c: c, outcome: store.Outcome{ID: c.ID, State: c.State, Reason: c.Reason, Error: c.Error}})
		if err := e.afterStep(ctx, tx, &r.p, c, c.State, c.Reason); err != nil {
			return err
		}
	}
	return nil
}

// readGuards reads the cooldowns, breakers and storm state of the claimed actions.
func (e *Engine) readGuards(ctx context.Context, tx pgx.Tx, claimed []store.Claimed, g *guards) error {
	var keys []store.CooldownKey
	var bkeys []store.BreakerKey
	var rs []string
	seenKey, seenRule := map[store.BreakerKey]bool{}, map[string]bool{}
	for _, c := range claimed {
		if c.Phase == vocab.PhaseActions {
			keys = append(keys, store.CooldownKey{Rule: c.Rule, Target: c.Target})
		}
		if c.Class != vocab.ClassDisruptive {
			continue
		}
		if k := (store.BreakerKey{Handler: c.Handler, Scope: c.Scope}); !seenKey[k] {
			seenKey[k] = true
			bkeys = append(bkeys, k)
		}
		if c.Phase == vocab.PhaseActions && !seenRule[c.Rule] {
			seenRule[c.Rule] = true
			rs = append(rs, c.Rule)
		}
	}
	var err error
	if g.cool, err = e.st.CooldownsTx(ctx, tx, keys, g.now); err != nil {
		return err
	}
	if g.breakers, err = e.st.BreakersTx(ctx, tx, bkeys); err != nil {
		return err
	}
	if e.o.StormMaxTargets > 0 {
		g.stormy, err = e.st.StormyRulesTx(ctx, tx, rs, g.now.Add(-e.o.StormWindow), e.o.StormMaxTargets)
	}
	return err
}

// decideAll decides every claimed action and starts those that may run. An error that belongs to
// one action (a constraint its row breaks, data the database refuses) fails that action alone,
// with reason internal_error; only an error of the database itself (transient) fails the pass.
func (r *passRun) decideAll(ctx context.Context, tx pgx.Tx, set *rules.Set, claimed []store.Claimed, g guards, checked []*callout) error {
	e := r.e
	byID := make(map[int64]*callout, len(checked))
	for _, co := range checked {
		byID[co.c.ID] = co
	}
	mark := g.now.Add(calloutHold).Truncate(time.Microsecond) // the database keeps microseconds
	var marks []int64
	busy := map[string]bool{}
	var outs []store.Outcome
	var decided []decision
	finish := func(d decision) {
		d.outcome.At = g.now
		d.outcome.Error, d.outcome.Result, d.verdict = storable(d.outcome.Error), storable(d.outcome.Result), storable(d.verdict)
		outs = append(outs, d.outcome)
		decided = append(decided, d)
	}
	for _, c := range claimed {
		d := e.decide(ctx, tx, set, c, g, byID[c.ID])
		switch {
		case d.callout != nil:
			if checked == nil { // in the second transaction, a callout needed anew waits for a later pass
				d.callout.mark = mark
				marks = append(marks, c.ID)
				r.pending = append(r.pending, d.callout)
			}
			continue
		case !d.run:
			finish(d)
			continue
		case busy[c.Target]:
			continue // one at a time per target: it waits for a later pass
		}
		select {
		case e.slots <- struct{}{}:
			r.reserved++
		default:
			continue // no free slot: it waits (execution slots never refuse)
		}
		started, reason, refusal, err := e.start(ctx, tx, set, c, g.now, d.trial)
		if !started {
			<-e.slots
			r.reserved--
		}
		switch {
		case err != nil && store.IsTransient(err):
			return err
		case err != nil:
			e.log.Error("could not start an action; it fails alone", "action_id", c.ID, "rule", c.Rule, "handler", c.Handler, "err", err)
			d.run = false
			d.outcome.State, d.outcome.Reason, d.outcome.Error = vocab.StateFailed, vocab.ReasonInternalError, "could not start the action: "+err.Error()
			finish(d)
		case refusal != "": // a cooldown, a budget or the breaker refused it: skipped
			d.run = false
			d.outcome.State, d.outcome.Reason, d.outcome.Error = vocab.StateSkipped, reason, refusal
			finish(d)
		case started:
			busy[c.Target] = true
			e.running.Store(c.ID, struct{}{})
			r.p.audit(store.AuditInsert{IncidentID: c.IncidentID, ActionID: c.ID, Kind: store.AuditAction, Actor: e.o.Owner,
				Reason: string(vocab.ReasonStarted), RuleHash: c.RuleHash, Detail: map[string]any{"handler": c.Handler, "target": c.Target}})
			r.toRun = append(r.toRun, toStart{c, d.act})
		}
	}
	if err := e.st.MarkCheckingTx(ctx, tx, marks, e.o.Owner, mark); err != nil {
		return err
	}
	if _, err := e.st.FinishActionsTx(ctx, tx, e.o.Owner, outs); err != nil {
		return err
	}
	for _, d := range decided {
		if err := e.afterStep(ctx, tx, &r.p, d.c, d.outcome.State, d.outcome.Reason); err != nil {
			return err
		}
	}
	r.finals = append(r.finals, decided...)
	return nil
}

// storable makes text PostgreSQL stores: text and jsonb refuse NUL and invalid UTF-8, and a
// handler's message (a Check's error) must not fail the pass that records it.
func storable(s string) string {
	return strings.ReplaceAll(strings.ToValidUTF8(s, "\uFFFD"), "\x00", "\uFFFD")
}

// callOut makes the callouts, all at once (at most one claim batch; each call is bounded), with no
// transaction open: the actions stay hidden from other claims for calloutHold.
func (e *Engine) callOut(ctx context.Context, cos []*callout) {
	var wg sync.WaitGroup
	for _, co := range cos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// calm: these goroutines are beyond the executor's panic recovery.
			if m, ok := co.act.(handlers.WorkloadMember); ok && co.size {
				sctx, cancel := context.WithTimeout(ctx, calloutTimeout)
				co.sizeErr = calm(func() (err error) { co.sizeN, err = m.WorkloadSize(sctx); return err })
				cancel()
			}
			if co.check {
				cctx, cancel := context.WithTimeout(ctx, min(time.Duration(co.c.TimeoutMS)*time.Millisecond, calloutTimeout))
				co.checkErr = calm(func() error { return co.act.Check(cctx, co.c.Alert) })
				cancel()
			}
			co.done = true
		}()
	}
	wg.Wait()
}

// errRefused rolls back the savepoint of an action a guard refused in start.
var errRefused = errors.New("refused by a guard")

// start claims what the guards hand out one at a time (see claimGuards) and marks the action
// running under this replica's lease, all in a savepoint. It reports false with a refusal when a
// guard refused, and false without one, leaving the action planned, when another executor or
// replica got the target first; an error rolls back only this action's savepoint.
func (e *Engine) start(ctx context.Context, tx pgx.Tx, set *rules.Set, c store.Claimed, now time.Time, trial bool) (bool, vocab.Reason, string, error) {
	var reason vocab.Reason
	var refusal string
	err := inSavepoint(ctx, tx, func(sp pgx.Tx) error {
		var err error
		if reason, refusal, err = e.claimGuards(ctx, sp, set, c, now, trial); err != nil {
			return err
		}
		if refusal != "" {
			return errRefused
		}
		return e.st.StartActionTx(ctx, sp, c.ID, e.o.Owner, now, now.Add(e.o.Lease))
	})
	switch {
	case errors.Is(err, errRefused):
		return false, reason, refusal, nil
	case store.IsTargetBusy(err):
		return false, "", "", nil
	case err != nil:
		return false, "", "", err
	}
	return true, "", "", nil
}

// claimGuards claims, for an action about to start, its rule's cooldown on the target (claimed,
// not only read: another replica or an earlier action of this pass may have started it since
// the pass read the cooldowns), its breaker's half-open trial, and the budgets of a disruptive
// action (last, so a refusal never spends; the savepoint takes back the rest). It returns the
// reason and message of a refusal.
func (e *Engine) claimGuards(ctx context.Context, sp pgx.Tx, set *rules.Set, c store.Claimed, now time.Time, trial bool) (vocab.Reason, string, error) {
	// A retry (a page the pager did not take) is never blocked by its own first attempt's cooldown.
	if r := set.Rule(c.Rule); r != nil && r.Cooldown > 0 && c.Phase == vocab.PhaseActions && c.Attempt == 0 {
		ok, until, err := e.st.ClaimCooldownTx(ctx, sp, store.CooldownKey{Rule: c.Rule, Target: c.Target}, now, now.Add(r.Cooldown))
		if err != nil {
			return "", "", err
		}
		if !ok {
			msg := "cooldown started meanwhile by another action on the target"
			if !until.IsZero() {
				msg = "cooldown until " + until.UTC().Format(time.RFC3339)
			}
			return vocab.ReasonCooldown, msg, nil
		}
	}
	if trial {
		k := store.BreakerKey{Handler: c.Handler, Scope: c.Scope}
		ok, err := e.st.ClaimBreakerTrialTx(ctx, sp, k, e.o.BreakerOpenFor, now, c.ID)
		if err != nil {
			return "", "", err
		}
		if !ok {
			return vocab.ReasonBreaker, "another action is the breaker's half-open trial", nil
		}
		if err := e.halfOpenMachine(ctx, sp, k, now); err != nil {
			return "", "", err
		}
	}
	if c.Class != vocab.ClassDisruptive {
		return "", "", nil
	}
	for _, b := range e.o.Budgets {
		if !b.matches(c.Handler) {
			continue
		}
		ok, err := e.st.SpendBudgetTx(ctx, sp, b.Name, b.key(c.Scope), b.Max, b.Window, now, c.ID)
		if err != nil {
			return "", "", err
		}
		if !ok {
			return vocab.ReasonBudget, fmt.Sprintf("budget %s: %d %s actions per %s already spent for %q", b.Name, b.Max, b.Match, b.Window, b.key(c.Scope)), nil
		}
	}
	return "", "", nil
}

// inSavepoint runs fn in a savepoint of tx: when fn fails, only what it did is rolled back and
// the transaction goes on (a failed statement would otherwise abort all of it).
func inSavepoint(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(sp); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

// decide applies the guards, in DESIGN.md order, to one claimed action. When it needs a call to
// the handler's peer that co (the calls made for it, or nil) does not hold, it returns a decision
// with a callout and decides nothing.
func (e *Engine) decide(ctx context.Context, tx pgx.Tx, set *rules.Set, c store.Claimed, g guards, co *callout) decision {
	d := decision{c: c, outcome: store.Outcome{ID: c.ID}}
	skip := func(reason vocab.Reason, msg string) decision {
		d.outcome.State, d.outcome.Reason, d.outcome.Error = vocab.StateSkipped, reason, msg
		return d
	}
	if reason, msg := e.refusal(set, c, g); reason != "" {
		return skip(reason, msg)
	}
	dry := e.o.DryRun || c.Mode == vocab.ModeShadow
	v := e.verdicts(c, g)
	d.trial = v.trial
	switch {
	case v.target != "":
		return skip(vocab.ReasonStorm, v.target)
	case v.storm != "" && !dry:
		return skip(vocab.ReasonStorm, v.storm)
	case v.breaker != "" && !dry:
		return skip(vocab.ReasonBreaker, v.breaker)
	}
	act, err := e.buildStored(c)
	if co != nil {
		act, err = co.act, nil
	}
	if err != nil {
		d.outcome.State, d.outcome.Reason, d.outcome.Error = vocab.StateFailed, vocab.ReasonBadParam, err.Error()
		return d
	}
	d.act = act
	// The storm guard's second bound, the share of one workload's members a rule acts on, and the
	// re-check of stale evidence need the handler's peer: a callout, made outside the transaction.
	members := e.workloadMembers(ctx, tx, c, act, g.now)
	stale := e.stale(c, g.now)
	if d.callout = needCallout(c, act, co, members > 1, stale || dry); d.callout != nil {
		return d
	}
	if w := e.workloadVerdict(c, members, co); w != "" {
		v.storm = strings.TrimPrefix(v.storm+"; "+w, "; ")
		if !dry {
			return skip(vocab.ReasonStorm, v.storm)
		}
	}
	switch {
	case stale && co.checkErr != nil:
		return skip(vocab.ReasonStale, "evidence from "+c.EvidenceAt.UTC().Format(time.RFC3339)+" is older than safety.max_alert_age; "+co.checkErr.Error())
	case dry:
		return e.dryRun(ctx, tx, d, co, v, g.now)
	}
	d.run = true
	return d
}

// stale reports whether an action's evidence is older than safety.max_alert_age. A notification
// already tried once (the pager was down) is delivered late rather than never.
func (e *Engine) stale(c store.Claimed, now time.Time) bool {
	retrying := c.Class == vocab.ClassNotify && c.Attempt > 0
	return e.o.MaxAlertAge > 0 && now.Sub(c.EvidenceAt) > e.o.MaxAlertAge && !retrying
}

// needCallout returns the callout an action needs (its workload's size, its Check) when co, the
// calls made for it, does not hold it; nil when nothing is missing.
func needCallout(c store.Claimed, act handlers.Action, co *callout, size, check bool) *callout {
	if !size && !check {
		return nil
	}
	if co != nil && (!size || co.size) && (!check || co.check) {
		return nil
	}
	return &callout{c: c, act: act, size: size, check: check}
}

// refusal returns why an action is refused before anything is built: its incident resolved or
// its rule is gone (cancelled), the kill switch (disruptive only), a cooldown in force.
func (e *Engine) refusal(set *rules.Set, c store.Claimed, g guards) (vocab.Reason, string) {
	switch {
	case c.IncidentState == vocab.IncidentResolved && c.Phase != vocab.PhaseOnResolved && c.Phase != vocab.PhaseResolve:
		return vocab.ReasonCancelled, "the incident resolved"
	case set.Rule(c.Rule) == nil:
		return vocab.ReasonCancelled, "the rule no longer exists"
	case g.paused && c.Class == vocab.ClassDisruptive:
		return vocab.ReasonPaused, "responder is paused"
	}
	// A retry (a page the pager did not take) is never blocked by its own first attempt's cooldown.
	if until, ok := g.cool[store.CooldownKey{Rule: c.Rule, Target: c.Target}]; ok && c.Phase == vocab.PhaseActions && c.Attempt == 0 {
		return vocab.ReasonCooldown, "cooldown until " + until.UTC().Format(time.RFC3339)
	}
	return "", ""
}

// verdict is what the storm guard and the breaker say of a disruptive action.
type verdict struct {
	target  string // an empty or wildcard target: always refused
	storm   string // the rule touches too many targets
	breaker string // the breaker is open, or another action is its trial
	trial   bool   // the action is its breaker's half-open trial
}

// verdicts applies the storm guard (an empty or wildcard target is never acted on, and a rule
// touching too many targets at once acts on none of them) and the circuit breaker of (handler,
// scope): open refuses; once its open period is over, one action (cluster-wide, claimed in start)
// runs as the trial.
func (e *Engine) verdicts(c store.Claimed, g guards) verdict {
	var v verdict
	if c.Class != vocab.ClassDisruptive {
		return v
	}
	if t := strings.TrimSpace(c.Target); t == "" || strings.Contains(t, "*") {
		v.target = "empty or wildcard target " + strconv.Quote(c.Target)
		return v
	}
	if n, ok := g.stormy[c.Rule]; ok && c.Phase == vocab.PhaseActions {
		v.storm = fmt.Sprintf("rule %s would touch %d targets within %s (safety.storm_guard.max_targets %d)", c.Rule, n, e.o.StormWindow, e.o.StormMaxTargets)
	}
	if b, ok := g.breakers[store.BreakerKey{Handler: c.Handler, Scope: c.Scope}]; ok {
		switch {
		case b.State == store.BreakerOpen && b.OpenedAt != nil && g.now.Before(b.OpenedAt.Add(e.o.BreakerOpenFor)):
			v.breaker = "breaker open since " + b.OpenedAt.UTC().Format(time.RFC3339)
		case b.State == store.BreakerHalfOpen && b.TrialActionID != nil && *b.TrialActionID != c.ID:
			v.breaker = "breaker half-open: another action is its trial"
		case b.State != store.BreakerClosed:
			v.trial = true
		}
	}
	return v
}

// dryRun records what a dry run or shadow action would have done, with every guard's verdict.
func (e *Engine) dryRun(ctx context.Context, tx pgx.Tx, d decision, co *callout, v verdict, now time.Time) decision {
	d.outcome.State, d.outcome.Reason = vocab.StateDryRun, vocab.ReasonDryRun
	if !e.o.DryRun {
		d.outcome.Reason = vocab.ReasonShadow
	}
	d.verdict = "check: ok"
	if co.checkErr != nil {
		d.verdict = "check: " + co.checkErr.Error()
	}
	for _, s := range []string{v.storm, v.breaker, e.budgetVerdict(ctx, tx, d.c, now)} {
		if s != "" {
			d.verdict += "; " + s
		}
	}
	d.outcome.Result = "would run " + d.c.Handler + " on " + d.c.Target + " (" + d.verdict + ")"
	return d
}

// workloadMembers counts, for an action the storm guard's max_workload_fraction applies to, the
// distinct members of its target workload its rule acted on within the storm window (0 when the
// guard does not apply, -1 when the count failed: the guard fails closed).
func (e *Engine) workloadMembers(ctx context.Context, tx pgx.Tx, c store.Claimed, act handlers.Action, now time.Time) int {
	if _, ok := act.(handlers.WorkloadMember); !ok || e.o.StormMaxWorkloadFraction <= 0 ||
		c.Class != vocab.ClassDisruptive || c.Phase != vocab.PhaseActions {
		return 0
	}
	var n int
	err := inSavepoint(ctx, tx, func(sp pgx.Tx) error {
		var err error
		n, err = e.st.WorkloadMembersTx(ctx, sp, c.Rule, c.Target, now.Add(-e.o.StormWindow))
		return err
	})
	if err != nil {
		e.log.Warn("storm guard: could not count the workload's members; the guard refuses", "action_id", c.ID, "err", err)
		return -1
	}
	return n
}

// workloadVerdict refuses an action when its rule's actions within the storm window would touch
// more than safety.storm_guard.max_workload_fraction of its target workload's members (at least one
// member is always allowed: the handlers' own floors, such as min_healthy, protect small
// workloads). A workload whose size or members cannot be read is refused too: the guard fails
// closed. n is from workloadMembers, co holds the size the handler reported.
func (e *Engine) workloadVerdict(c store.Claimed, n int, co *callout) string {
	switch {
	case n == 0 || n == 1:
		return ""
	case n < 0:
		return "the members of workload " + c.Target + " acted on could not be counted: the storm guard refuses"
	case co.sizeErr != nil:
		return fmt.Sprintf("the size of workload %s is unknown (%v): the storm guard refuses", c.Target, co.sizeErr)
	}
	allowed := max(1, int(e.o.StormMaxWorkloadFraction*float64(co.sizeN)))
	if n > allowed {
		return fmt.Sprintf("rule %s would touch %d of the %d members of %s within %s (safety.storm_guard.max_workload_fraction %g allows %d)",
			c.Rule, n, co.sizeN, c.Target, e.o.StormWindow, e.o.StormMaxWorkloadFraction, allowed)
	}
	return ""
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
func (e *Engine) afterStep(ctx context.Context, tx pgx.Tx, p *planner, c store.Claimed, state vocab.State, reason vocab.Reason) error {
	if passes(state) {
		return nil
	}
	if err := e.st.CancelLaterStepsTx(ctx, tx, c.IncidentID, c.Phase, c.Step, p.now); err != nil {
		return err
	}
	if c.Phase != vocab.PhaseActions || !escalates(state, reason) {
		return nil
	}
	if reason == vocab.ReasonStorm { // the incident is suppressed; a storm escalates once, not once per target
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
	p.plan(c.IncidentID, rule, vocab.PhaseEscalate, c.Alert, p.now)
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
			Actor: p.e.o.Owner, Reason: string(d.outcome.Reason), RuleHash: d.c.RuleHash, Detail: detail})
	}
	return p.flush(ctx, tx)
}

// run calls the handler of one started action and records its outcome.
func (e *Engine) run(ctx context.Context, c store.Claimed, act handlers.Action) {
	defer e.wg.Done()
	defer e.recoverAction(ctx, c)
	defer func() { <-e.slots; e.running.Delete(c.ID); e.Kick() }()
	e.m.inFlight.WithLabelValues(c.Handler).Inc()
	defer e.m.inFlight.WithLabelValues(c.Handler).Dec()

	out := store.Outcome{ID: c.ID, State: vocab.StateSucceeded}
	start := time.Now()
	ictx, stop := e.interruptible(ctx, c)
	inv := handlers.Invocation{ActionID: c.ID, IncidentID: c.IncidentID, IdempotencyKey: idempotencyKey(c.ID)}
	actx, cancel := context.WithTimeout(ictx, time.Duration(c.TimeoutMS)*time.Millisecond)
	res, err := act.Do(actx, inv, c.Alert)
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
		out.State, out.Reason, out.Error = vocab.StateFailed, handlers.ReasonOf(err), err.Error()
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
				seen.Reason = vocab.ReasonLeaseLost
				seen.Error = strings.TrimSuffix("another replica recorded this action (its lease was no longer ours); here the handler ended "+
					string(out.State)+": "+out.Error, ": ")
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
		e.m.actions.WithLabelValues(c.Rule, c.Handler, string(out.State)).Inc()
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
	transient := out.Reason == vocab.ReasonServerError || out.Reason == vocab.ReasonTimeout
	attempt := c.Attempt + 1 // StartActionTx counted this one
	if c.Class != vocab.ClassNotify || !transient || attempt >= notifyAttempts {
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
			Actor: e.o.Owner, Reason: string(vocab.ReasonRetryScheduled), RuleHash: c.RuleHash,
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
	if c.Class != vocab.ClassDisruptive {
		return ""
	}
	for _, b := range e.o.Budgets {
		if !b.matches(c.Handler) {
			continue
		}
		var used int
		err := inSavepoint(ctx, tx, func(sp pgx.Tx) error { // a failed read must not abort the pass
			var err error
			used, err = e.st.BudgetUsedTx(ctx, sp, b.Name, b.key(c.Scope), b.Window, now)
			return err
		})
		if err == nil && used >= b.Max {
			return "budget " + b.Name + " exhausted"
		}
	}
	return ""
}

package engine

import (
	"context"
	"errors"
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

// ExecuteOnce runs one executor pass: it expires dead leases, claims runnable actions, runs them
// down the guards (pipeline, guards.go), records every refusal and dry run, and starts the
// handlers of the actions that may run. It returns how many actions it decided on. Tests call it
// directly; Run calls it in a loop.
func (e *Engine) ExecuteOnce(ctx context.Context) (int, error) { return e.execute(ctx, ctx) }

// decision is the final outcome of one action, recorded with its audit row.
type decision struct {
	c       store.Claimed
	outcome store.Outcome
	// evaluation, for a dry run, is what Check and the guards said.
	evaluation string
}

// callout is what the guards need from a handler's peer (Check, WorkloadSize); execute fetches it
// with no transaction open, so no row lock and not the kill switch's lock is held while a peer is
// slow.
type callout struct {
	c   store.Claimed
	act handlers.Action
	// rendered are the params of a chained step, rendered when it was built (guardInput.rendered).
	rendered map[string]any
	mark     time.Time // the action's not_before while it is checked (store.MarkCheckingTx)
	size     bool      // WorkloadSize is wanted
	check    bool      // Check is wanted
	done     bool
	// What the peer said.
	sizeN    int
	sizeErr  error
	checkErr error
}

// Bounds of the calls the guards need from a handler's peer, and how long an action is hidden
// from other claims while they run (then another executor may claim it: the checker is presumed
// dead).
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
	e       *Engine
	p       planner
	slots   *slots // the execution slots taken for toRun
	toRun   []toStart
	finals  []decision
	pending []*callout
}

// release gives back the slots of a transaction that did not commit: an action is running in the
// database only while this replica holds a slot for it and renews its lease.
func (r *passRun) release() {
	for _, t := range r.toRun {
		r.e.running.Delete(t.c.ID)
	}
	if r.slots != nil {
		r.slots.releaseAll()
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
		*r = passRun{e: e, slots: newSlots(e.slots), p: planner{ctx: ctx, e: e, set: set, now: now, firing: noneFiring{}, lk: lk}}
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
// actions and reads their guards' state (readGuards).
func (e *Engine) claim(ctx context.Context, tx pgx.Tx, r *passRun, checked []*callout, now time.Time) ([]store.Claimed, *guardReads, error) {
	g := &guardReads{}
	if checked == nil {
		if err := e.expire(ctx, tx, r, now); err != nil {
			return nil, g, err
		}
	}
	// The kill switch, read in the claiming transaction (FOR SHARE): no action starts after a
	// pause committed. Approved actions are claimed here too, so it is re-checked before Do.
	st := txGuards{e: e, tx: tx}
	pause, err := st.pause(ctx)
	if err != nil {
		return nil, g, err
	}
	g.paused = e.cur().Paused || pause.Active(now)
	e.m.paused.Set(boolFloat(g.paused))
	var claimed []store.Claimed
	if checked == nil {
		claimed, err = e.st.ClaimRunnableTx(ctx, tx, now, e.claimLimit())
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
	err = readGuards(ctx, st, &e.cur().Options, claimed, now, g)
	return claimed, g, err
}

// claimMargin is how many actions a pass claims beyond the free execution slots (claimLimit).
const claimMargin = 64

// claimLimit is how many actions a pass claims: Options.ClaimBatch or, when the actions that pass
// every guard run (not a dry run), the free execution slots plus claimMargin for those the guards
// decide without a slot (refusals, shadow), if that is fewer. An action claimed only to wait for a
// slot costs the pass its row lock, its read and its guards for nothing: a thousand pages queued
// for one pager would otherwise be claimed and put back by every pass to start a few.
func (e *Engine) claimLimit() int {
	if e.cur().DryRun {
		return e.o.ClaimBatch
	}
	return min(e.o.ClaimBatch, cap(e.slots)-len(e.slots)+claimMargin)
}

// expire turns running actions whose lease expired into unknown and expires stale approvals.
func (e *Engine) expire(ctx context.Context, tx pgx.Tx, r *passRun, now time.Time) error {
	expired, err := e.st.ExpireLeasesTx(ctx, tx, now, e.o.Lease)
	if err != nil {
		return err
	}
	if ttl := e.cur().ApprovalTTL; ttl > 0 {
		stale, err := e.st.ExpireApprovalsTx(ctx, tx, now, ttl)
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

// decideAll runs every claimed action down the guards, starts those that may run, records the
// others' outcomes and marks those that wait for a callout. An error that belongs to one action (a
// constraint its row breaks, data the database refuses) fails that action alone, with reason
// internal_error; only an error of the database itself (transient) fails the pass.
func (r *passRun) decideAll(ctx context.Context, tx pgx.Tx, set *rules.Set, claimed []store.Claimed, g *guardReads, checked []*callout) error {
	e, now := r.e, r.p.now
	byID := make(map[int64]*callout, len(checked))
	for _, co := range checked {
		byID[co.c.ID] = co
	}
	mark := now.Add(calloutHold).Truncate(time.Microsecond) // the database keeps microseconds
	var marks []int64
	var rendered []store.ParamsUpdate
	var outs []store.Outcome
	var decided []decision
	o := &e.cur().Options // the settings of this pass, whatever a reload swaps meanwhile
	for _, c := range claimed {
		in := &guardInput{c: c, now: now, o: o, log: e.log, rule: set.Rule(c.Rule), read: g, st: txGuards{e: e, tx: tx},
			drill: g.drills[c.ID], dry: dryMode(o, c), co: byID[c.ID], slots: r.slots}
		in.build = func(c store.Claimed) (act handlers.Action, err error) {
			act, in.rendered, err = e.buildClaimed(c)
			return act, err
		}
		v, err := r.decide(ctx, in)
		if in.rendered != nil && (v.kind == pass || v.state == vocab.StateDryRun) {
			rendered = append(rendered, store.ParamsUpdate{ID: c.ID, Params: in.rendered})
		}
		switch {
		case err != nil:
			return err
		case v.callout != nil && checked == nil: // in the second transaction, one needed anew waits for a later pass
			v.callout.mark = mark
			marks = append(marks, c.ID)
			r.pending = append(r.pending, v.callout)
		case v.kind == refuse:
			d := decision{c: c, outcome: store.Outcome{ID: c.ID, State: v.state, Reason: v.reason, At: now,
				Error: storable(v.err), Result: storable(v.result)}, evaluation: storable(v.evaluation)}
			outs = append(outs, d.outcome)
			decided = append(decided, d)
		}
	}
	if err := e.st.MarkCheckingTx(ctx, tx, marks, e.o.Owner, mark); err != nil {
		return err
	}
	if err := e.st.SetParamsTx(ctx, tx, rendered); err != nil {
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

// decide runs one claimed action down the guards and, when every check passed, claims what the
// guards hand out and starts it (claimGuards): a pass verdict means it started. A claim that fails
// for the data (not the database) fails the action alone, with reason internal_error.
func (r *passRun) decide(ctx context.Context, in *guardInput) (verdict, error) {
	v := runGuards(ctx, in)
	if v.kind != pass {
		return v, nil
	}
	e, c := r.e, in.c
	v, err := claimGuards(ctx, in, in.st)
	if err != nil || v.kind != pass {
		in.slots.give() // it did not start
	}
	switch {
	case err != nil && store.IsTransient(err):
		return v, err
	case err != nil:
		e.log.Error("could not start an action; it fails alone", "action_id", c.ID, "rule", c.Rule, "handler", c.Handler, "err", err)
		return verdict{kind: refuse, state: vocab.StateFailed, reason: vocab.ReasonInternalError, err: "could not start the action: " + err.Error()}, nil
	case v.kind != pass:
		return v, nil
	}
	in.slots.started(slotKeys(c)...)
	in.read.started(in.o, c)
	e.running.Store(c.ID, struct{}{})
	detail := map[string]any{"handler": c.Handler, "target": c.Target}
	if in.drillTo != "" { // a drill's page, sent to drills.page instead (drillPage)
		detail["drill_page"] = in.drillTo
	}
	r.p.audit(store.AuditInsert{IncidentID: c.IncidentID, ActionID: c.ID, Kind: store.AuditAction, Actor: e.o.Owner,
		Reason: string(vocab.ReasonStarted), RuleHash: c.RuleHash, Detail: detail})
	r.toRun = append(r.toRun, toStart{c, in.act})
	return v, nil
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
				co.checkErr = calm(func() error {
					a, err := co.c.DecodeAlert()
					if err != nil {
						return err
					}
					return co.act.Check(cctx, a)
				})
				cancel()
			}
			co.done = true
		}()
	}
	wg.Wait()
}

// buildStored builds an action from its stored (rendered) params.
func (e *Engine) buildStored(c store.Claimed) (handlers.Action, error) {
	h, ok := e.cur().Handlers.Get(c.Handler)
	if !ok {
		return nil, errors.New("handler " + c.Handler + " is not registered")
	}
	p, err := c.DecodeParams()
	if err != nil {
		return nil, err
	}
	return h.Build(handlers.Params(p))
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
		first, err := e.st.ClaimStormEscalationTx(ctx, tx, c.Rule, p.now, e.cur().StormWindow)
		if err != nil || !first {
			return err
		}
	}
	rule := p.set.Rule(c.Rule)
	if rule == nil {
		return nil
	}
	a, err := c.DecodeAlert()
	if err != nil {
		return err
	}
	p.plan(c.IncidentID, rule, vocab.PhaseEscalate, a, p.now)
	return nil
}

// flushAudit records one audit row per final decision, then the planned escalations.
func (p *planner) flushAudit(ctx context.Context, tx pgx.Tx, ds []decision) error {
	for _, d := range ds {
		detail := map[string]any{"handler": d.c.Handler, "target": d.c.Target, "state": d.outcome.State}
		if d.outcome.Error != "" {
			detail["error"] = d.outcome.Error
		}
		if d.evaluation != "" {
			detail["verdict"] = d.evaluation
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
	// The slot is free: the next action is claimed at once, not at the next poll.
	defer func() { <-e.slots; e.running.Delete(c.ID); e.kickExecutor() }()
	e.m.inFlight.WithLabelValues(c.Handler).Inc()
	defer e.m.inFlight.WithLabelValues(c.Handler).Dec()

	out := store.Outcome{ID: c.ID, State: vocab.StateSucceeded}
	start := time.Now()
	ictx, stop := e.interruptible(ctx, c)
	inv := handlers.Invocation{ActionID: c.ID, IncidentID: c.IncidentID, IdempotencyKey: idempotencyKey(c.ID), Drill: c.Drill}
	actx, cancel := context.WithTimeout(ictx, time.Duration(c.TimeoutMS)*time.Millisecond)
	res, err := doAction(actx, act, inv, c)
	cancel()
	interrupted := stop()
	out.Result = res.Detail
	if err == nil {
		out.Fields = res.Fields
	}
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
//
// The escalation it plans looks its handlers' targets up the way Process does (inPlanTx): with no
// transaction open, the transaction run again once they are known.
func (e *Engine) record(ctx context.Context, c store.Claimed, out store.Outcome) {
	lost, verifying := false, false
	lk := &lookups{}
	op := func() (struct{}, error) {
		now := e.now()
		out.At = now
		set := e.rules.Load()
		err := e.inPlanTx(ctx, lk, func(tx pgx.Tx) error {
			lost, verifying = false, false
			p := planner{ctx: ctx, e: e, set: set, now: now, firing: noneFiring{}, lk: lk}
			ids, v, err := e.finishTx(ctx, tx, &p, c, out) // verifying, when the rule verifies (verify.go)
			if err != nil {
				return err
			}
			verifying = v
			if len(ids) == 0 {
				lost = true
				seen := out
				seen.Reason = vocab.ReasonLeaseLost
				seen.Error = strings.TrimSuffix("another replica recorded this action (its lease was no longer ours); here the handler ended "+
					string(out.State)+": "+out.Error, ": ")
				return p.flushAudit(ctx, tx, []decision{{c: c, outcome: seen}})
			}
			if verifying { // no outcome yet: the verify pass settles it
				return p.flush(ctx, tx)
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
	case verifying: // counted once verified; the verify pass looks at once (its incident may have resolved already)
		nudge(e.kickTimers)
	default:
		e.m.actions.WithLabelValues(c.Rule, c.Handler, string(out.State)).Inc()
	}
}

// doAction calls the handler with the incident's alert. An alert that does not decode fails the
// action without a call: nothing was done.
func doAction(ctx context.Context, act handlers.Action, inv handlers.Invocation, c store.Claimed) (handlers.Result, error) {
	a, err := c.DecodeAlert()
	if err != nil {
		return handlers.Result{}, handlers.Fail(vocab.ReasonInternalError, "%w", err)
	}
	return act.Do(ctx, inv, a)
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

package engine

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Rule-level verify (issue 19, rules.Verify). When the last step of a rule's actions succeeds
// and the rule has `verify`, record moves the action running → verifying instead of succeeded
// (verifyTx): its lease and execution slot are released at once, and its deadline (now + within)
// is stored on the row. Nothing is counted, fed to the breaker or escalated yet: the action has no
// outcome. The verify pass (FireVerifications, run with the timers) then settles it, exactly
// once, whoever runs it (the row is locked FOR UPDATE SKIP LOCKED and changed only while still
// verifying):
//
//   - succeeded (audit reason recovered) when the condition holds: by default the incident
//     resolved (the resolved alert's batch kicks the pass); with `when`, the expression is true,
//     evaluated after every batch of alerts the engine commits and at the deadline;
//   - failed with reason not_recovered at the deadline otherwise.
//
// Either outcome is then what the handler's would have been: counted once in
// responder_actions_total, fed to the circuit breaker of (handler, scope), and, for
// not_recovered, the rule's escalation is planned. Dry runs and shadow rules never call Do, so
// they never verify.

// verifyBatch bounds the verifying actions one pass judges.
const verifyBatch = 1000

// verifyOf returns the verify of the rule whose last action step c is, when out (the handler's
// outcome) starts a verification; nil otherwise.
func (e *Engine) verifyOf(set *rules.Set, c store.Claimed, out store.Outcome) *rules.Verify {
	if out.State != vocab.StateSucceeded || c.Phase != vocab.PhaseActions || c.Mode == vocab.ModeShadow || e.cur().DryRun {
		return nil
	}
	rule := set.Rule(c.Rule)
	if rule == nil || rule.Verify == nil || c.Step < len(rule.Actions)-1 {
		return nil
	}
	return rule.Verify
}

// finishTx records the outcome of a handler call: the final one, or verifying when the action's
// rule verifies it (verifyOf). It returns the ids it changed (none: the action is no longer this
// replica's) and whether the action is now verifying.
func (e *Engine) finishTx(ctx context.Context, tx pgx.Tx, p *planner, c store.Claimed, out store.Outcome) ([]int64, bool, error) {
	v := e.verifyOf(p.set, c, out)
	if v == nil {
		ids, err := e.st.FinishActionsTx(ctx, tx, e.o.Owner, []store.Outcome{out})
		return ids, false, err
	}
	deadline := out.At.Add(v.Within).Truncate(time.Microsecond)
	ok, err := e.st.VerifyActionTx(ctx, tx, e.o.Owner, c.ID, deadline, out.Result, out.Fields)
	if err != nil || !ok {
		return nil, false, err
	}
	p.audit(store.AuditInsert{IncidentID: c.IncidentID, ActionID: c.ID, Kind: store.AuditAction, Actor: e.o.Owner,
		Reason: string(vocab.ReasonVerifyStarted), RuleHash: c.RuleHash,
		Detail: map[string]any{"handler": c.Handler, "target": c.Target, "state": vocab.StateVerifying,
			"condition": v.Condition(), "within": v.Within.String(), "deadline": deadline}})
	e.log.Info("action succeeded; verifying", "action_id", c.ID, "incident_id", c.IncidentID, "rule", c.Rule,
		"handler", c.Handler, "condition", v.Condition(), "deadline", deadline)
	return []int64{c.ID}, true, nil
}

// noteBatch tells the verify pass that a batch of alerts was committed: a verify `when` may hold
// now. Only when some rule has one.
func (e *Engine) noteBatch() {
	if len(*e.verifyWhen.Load()) > 0 {
		e.verifyDirty.Store(true)
		nudge(e.kickTimers)
	}
}

// noteVerify records the rules of s that have a verify `when` (SetRules).
func (e *Engine) noteVerify(s *rules.Set) {
	var names []string
	for _, r := range s.Rules {
		if r.Verify.HasWhen() {
			names = append(names, r.Name)
		}
	}
	e.verifyWhen.Store(&names)
}

// verdictOf is the outcome of a verifying action at now, if it has one: succeeded when the
// condition holds, failed (not_recovered) past the deadline.
func (e *Engine) verdictOf(c store.Claimed, v *rules.Verify, now time.Time, firing rules.FiringSet) (store.Outcome, bool) {
	out := store.Outcome{ID: c.ID, At: now}
	held := false
	if v.HasWhen() {
		a, err := c.DecodeAlert()
		if err == nil {
			held, err = v.Holds(rules.NewEnv(a, now, firing))
		}
		if err != nil {
			e.m.ruleErrors.WithLabelValues(c.Rule).Inc()
			e.log.Warn("verify condition failed to evaluate; it does not hold", "action_id", c.ID, "rule", c.Rule, "err", err)
		}
	} else {
		held = c.IncidentState == vocab.IncidentResolved
	}
	switch {
	case held:
		out.State, out.Reason = vocab.StateSucceeded, ""
		return out, true
	case c.VerifyDeadline != nil && !now.Before(*c.VerifyDeadline):
		out.State, out.Reason = vocab.StateFailed, vocab.ReasonNotRecovered
		out.Error = fmt.Sprintf("verify: %s did not hold by %s", notHeld(v), c.VerifyDeadline.UTC().Format(time.RFC3339))
		return out, true
	}
	return out, false
}

// notHeld says what did not hold.
func notHeld(v *rules.Verify) string {
	if v.HasWhen() {
		return fmt.Sprintf("when %q", v.When)
	}
	return "the incident's resolution (its alert still firing)"
}

// verifyFor is the verify an action is judged by: its rule's, or the default (the incident
// resolved) when the rule is gone or no longer verifies (a reload).
func verifyFor(set *rules.Set, c store.Claimed) *rules.Verify {
	if r := set.Rule(c.Rule); r != nil && r.Verify != nil {
		return r.Verify
	}
	return &rules.Verify{}
}

// FireVerifications judges the verifying actions that are due: those whose deadline passed or
// whose incident resolved and, after a batch of alerts (noteBatch), every one whose rule has a
// verify `when`. Each gets its outcome once (see the comment at the top of this file). It returns
// how many it settled. Run calls it with the timers (FireDueTimers).
func (e *Engine) FireVerifications(ctx context.Context) (int, error) {
	all := e.verifyDirty.Swap(false)
	var whenRules []string // judged after a batch: every verifying action of the rules with a verify `when`
	if all {
		whenRules = *e.verifyWhen.Load()
	}
	set := e.rules.Load()
	var p planner
	var finals []decision
	lk := &lookups{}
	err := e.inPlanTx(ctx, lk, func(tx pgx.Tx) error {
		finals = nil
		now := e.now()
		cs, err := e.st.ClaimVerifyingTx(ctx, tx, now, whenRules, verifyBatch)
		if err != nil || len(cs) == 0 {
			return err
		}
		p = planner{ctx: ctx, e: e, set: set, now: now, firing: noneFiring{}, lk: lk}
		var firing rules.FiringSet
		var outs []store.Outcome
		for _, c := range cs {
			v := verifyFor(set, c)
			if v.HasWhen() && firing == nil {
				if firing, err = e.firingSet(ctx, set, nil); err != nil {
					return err
				}
			}
			if out, ok := e.verdictOf(c, v, now, firing); ok {
				outs = append(outs, out)
				finals = append(finals, decision{c: c, outcome: out})
			}
		}
		return e.settleTx(ctx, tx, &p, finals, outs)
	})
	if err != nil {
		if all {
			e.verifyDirty.Store(true)
		}
		return 0, err
	}
	p.committed()
	for _, d := range finals {
		e.m.actions.WithLabelValues(d.c.Rule, d.c.Handler, string(d.outcome.State)).Inc()
		e.log.Info("action verified", "action_id", d.c.ID, "incident_id", d.c.IncidentID, "rule", d.c.Rule,
			"handler", d.c.Handler, "state", d.outcome.State, "reason", d.outcome.Reason)
	}
	if len(finals) > 0 {
		e.kickExecutor() // escalations may wait
	}
	return len(finals), nil
}

// settleTx records the outcomes of verifying actions in tx, then what any outcome of theirs
// does: the breaker's verdict, the escalation of a not_recovered one, and the audit rows. finals
// is trimmed to the actions it changed.
func (e *Engine) settleTx(ctx context.Context, tx pgx.Tx, p *planner, finals []decision, outs []store.Outcome) error {
	ids, err := e.st.FinishVerifyingTx(ctx, tx, outs)
	if err != nil {
		return err
	}
	changed := make(map[int64]bool, len(ids))
	for _, id := range ids {
		changed[id] = true
	}
	// Breaker rows in one order: two passes settling actions of the same breakers do not
	// deadlock.
	slices.SortFunc(finals, func(a, b decision) int {
		return cmp.Or(cmp.Compare(a.c.Handler, b.c.Handler), cmp.Compare(a.c.Scope, b.c.Scope), cmp.Compare(a.c.ID, b.c.ID))
	})
	for _, d := range finals {
		if !changed[d.c.ID] { // locked rows are only changed by their locker: not reached
			continue
		}
		st, reason := d.outcome.State, d.outcome.Reason
		if err := e.feedBreaker(ctx, tx, p, d.c.Action, st, reason); err != nil {
			return err
		}
		if err := e.afterStep(ctx, tx, p, d.c, st, reason); err != nil {
			return err
		}
		v := verifyFor(p.set, d.c)
		audit := reason
		if st == vocab.StateSucceeded {
			audit = vocab.ReasonRecovered
		}
		detail := map[string]any{"handler": d.c.Handler, "target": d.c.Target, "state": st,
			"condition": v.Condition(), "deadline": d.c.VerifyDeadline}
		if d.outcome.Error != "" {
			detail["error"] = d.outcome.Error
		}
		p.audit(store.AuditInsert{IncidentID: d.c.IncidentID, ActionID: d.c.ID, Kind: store.AuditAction, Actor: e.o.Owner,
			Reason: string(audit), RuleHash: d.c.RuleHash, Detail: detail})
	}
	return p.flush(ctx, tx)
}

// probeSnapshot is the firing snapshot with the probes' firing alerts (probe() in expressions).
type probeSnapshot struct {
	firingSnapshot
	probes map[string]rules.ProbeResult
}

// Probe implements rules.ProbeSet.
func (s probeSnapshot) Probe(name string) (rules.ProbeResult, bool) {
	r, ok := s.probes[name]
	return r, ok
}

// withProbes adds to fs the probes' firing alerts: those recorded (ProbeAlerts), then this batch's
// probe alerts in order (a firing one sets its probe's result, a resolved one removes it).
func (e *Engine) withProbes(ctx context.Context, fs firingSnapshot, batch []alert.Alert) (rules.FiringSet, error) {
	open, err := e.st.ProbeAlerts(ctx, e.now().Add(-firingTTL))
	if err != nil {
		return nil, err
	}
	ps := probeSnapshot{firingSnapshot: fs, probes: make(map[string]rules.ProbeResult, len(open))}
	for _, o := range open {
		ps.probes[o.Name] = probeResult(o.Value)
	}
	for _, a := range batch {
		switch {
		case a.Source != alert.SourceProbe:
		case a.Status == alert.StatusFiring:
			ps.probes[a.Name] = probeResult(a.Value)
		default:
			delete(ps.probes, a.Name)
		}
	}
	return ps, nil
}

// probeResult is probe() of a probe whose alert is firing with value v (nil: none).
func probeResult(v *float64) rules.ProbeResult {
	r := rules.ProbeResult{Success: false, Value: math.NaN()}
	if v != nil {
		r.Value = *v
	}
	return r
}

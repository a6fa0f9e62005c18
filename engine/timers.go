package engine

import (
	"context"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// FireDueTimers claims the `for` timers that are due and fires each exactly once: if the incident
// is still pending, its rule's `when` is re-checked against the latest alert; when it still holds
// the incident fires and its actions are planned, otherwise the check is retried after another
// `for`. Then it settles the verifications that are due (FireVerifications). It returns how many
// timers and verifications it handled.
func (e *Engine) FireDueTimers(ctx context.Context) (int, error) {
	n, err := e.fireForTimers(ctx)
	if err != nil {
		return n, err
	}
	// Verify deadlines are timers too (verify.go).
	v, err := e.FireVerifications(ctx)
	return n + v, err
}

// fireForTimers fires the due `for` timers (FireDueTimers).
func (e *Engine) fireForTimers(ctx context.Context) (int, error) {
	set := e.rules.Load()
	n := 0
	fired := 0
	var p planner
	lk := &lookups{}
	err := e.inPlanTx(ctx, lk, func(tx pgx.Tx) error {
		n, fired = 0, 0
		now := e.now()
		due, err := e.st.ClaimDueTimersTx(ctx, tx, now, 256)
		if err != nil || len(due) == 0 {
			return err
		}
		n = len(due)
		var firing rules.FiringSet = noneFiring{}
		if set.UsesFiring {
			if firing, err = e.firingSet(ctx, set, nil); err != nil {
				return err
			}
		}
		p = planner{ctx: ctx, e: e, set: set, now: now, firing: firing, lk: lk}
		for _, d := range due {
			ok, err := p.fireTimer(ctx, tx, d)
			if err != nil {
				return err
			}
			if ok {
				fired++
			}
		}
		return p.flush(ctx, tx)
	})
	if err != nil {
		return 0, err
	}
	p.committed()
	if fired > 0 {
		e.m.incidents.WithLabelValues("fired").Add(float64(fired))
		e.Kick()
	}
	return n, nil
}

// fireTimer handles one due timer in tx: it drops the timer of an incident no longer pending or of
// a rule gone, reschedules it when the rule's `when` no longer holds, and otherwise fires the
// incident and plans its actions. It reports whether the incident fired.
func (p *planner) fireTimer(ctx context.Context, tx pgx.Tx, d store.DueTimer) (bool, error) {
	e, now := p.e, p.now
	rule := p.set.Rule(d.Rule)
	if rule == nil || d.State != vocab.IncidentPending {
		reason := vocab.ReasonNotPending
		if rule == nil {
			reason = vocab.ReasonRuleRemoved
		}
		p.audit(store.AuditInsert{IncidentID: d.IncidentID, Kind: store.AuditTimer, Actor: e.o.Owner, Reason: string(reason)})
		return false, e.st.DeleteTimerTx(ctx, tx, d.TimerID)
	}
	ok, err := rule.Match(rules.NewEnv(d.Alert, now, p.firing))
	if err != nil {
		e.m.ruleErrors.WithLabelValues(rule.Name).Inc()
	}
	if !ok {
		p.audit(store.AuditInsert{IncidentID: d.IncidentID, Kind: store.AuditTimer, Actor: e.o.Owner, Reason: string(vocab.ReasonRecheckFailed),
			RuleHash: rule.FileHash, Detail: map[string]any{"retry_at": now.Add(recheckAfter(rule))}})
		return false, e.st.RescheduleTimerTx(ctx, tx, d.TimerID, now.Add(recheckAfter(rule)))
	}
	if _, err := e.st.FireIncidentTx(ctx, tx, d.IncidentID, now); err != nil {
		return false, err
	}
	if err := e.st.DeleteTimerTx(ctx, tx, d.TimerID); err != nil {
		return false, err
	}
	p.audit(store.AuditInsert{IncidentID: d.IncidentID, Kind: store.AuditIncident, Actor: e.o.Owner, Reason: string(vocab.IncidentFiring),
		RuleHash: rule.FileHash, Detail: map[string]any{"for": rule.For.String()}})
	p.plan(d.IncidentID, rule, vocab.PhaseActions, d.Alert, d.DueAt)
	return true, nil
}

// recheckAfter is when a `for` whose re-check failed is checked again: after another `for`, and
// never sooner than a minute (a reload may have set `for` to zero).
func recheckAfter(r *rules.Rule) time.Duration { return max(r.For, time.Minute) }

package ruletest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// prior builds a test's prior state by running the engine itself at earlier times: each `firing`
// alert is received at its starts_at (and its rules' `for` timers fire when due), and each
// actions_in_last entry makes its rule act on its alert `ago` before now, approved if the action
// needs approval, after which that episode resolves. Nothing is written behind the engine's back,
// so cooldowns, firing() and open incidents are exactly what serve would have.
func (h *harness) prior(ctx context.Context, now time.Time, t Test) error {
	if len(t.Firing) == 0 && len(t.ActionsInLast) == 0 {
		return nil
	}
	type event struct {
		at     time.Time
		firing []alert.Alert
		acts   []PriorAction
	}
	events := map[time.Time]*event{}
	at := func(ts time.Time) *event {
		if events[ts] == nil {
			events[ts] = &event{at: ts}
		}
		return events[ts]
	}
	for _, in := range t.Firing {
		a, err := in.alert(now)
		if err != nil {
			return lineErr(in.Line, "firing: %w", err)
		}
		a.ReceivedAt = a.StartsAt
		e := at(a.StartsAt)
		e.firing = append(e.firing, a)
		// The `for` timers of any rule fire when due, as they would have.
		for _, r := range h.set.Rules {
			if due := a.StartsAt.Add(r.For); r.For > 0 && due.Before(now) {
				at(due)
			}
		}
	}
	for _, pa := range t.ActionsInLast {
		if h.set.Rule(pa.Rule) == nil {
			return lineErr(pa.Line, "actions_in_last: no rule named %q in rule_files", pa.Rule)
		}
		e := at(now.Add(-pa.Ago))
		e.acts = append(e.acts, pa)
	}
	var evs []*event
	for _, e := range events {
		evs = append(evs, e)
	}
	slices.SortFunc(evs, func(a, b *event) int { return a.at.Compare(b.at) })
	for _, e := range evs {
		h.clk.set(e.at)
		if err := h.step(ctx, e.firing); err != nil {
			return err
		}
		for _, pa := range e.acts {
			if err := h.priorAction(ctx, pa); err != nil {
				return err
			}
		}
	}
	return nil
}

// priorAction makes pa's rule act on pa's alert at the clock's time.
func (h *harness) priorAction(ctx context.Context, pa PriorAction) error {
	now := h.clk.Now()
	rule := h.set.Rule(pa.Rule)
	a := alert.Alert{Source: pa.Source, Status: alert.StatusFiring, Labels: pa.Labels, Annotations: pa.Annots, Value: pa.Value,
		StartsAt: now.Add(-rule.For), ReceivedAt: now}
	if a.Annotations == nil {
		a.Annotations = map[string]string{}
	}
	if err := a.Validate(); err != nil {
		return lineErr(pa.Line, "actions_in_last: %w", err)
	}
	mark, err := h.lastActionID(ctx)
	if err != nil {
		return err
	}
	if err := h.step(ctx, []alert.Alert{a}); err != nil {
		return err
	}
	if err := h.approvePrior(ctx, pa.Rule, mark, now); err != nil {
		return err
	}
	if err := h.checkActed(ctx, pa, mark); err != nil {
		return err
	}
	// That episode is over: it resolves (its on_resolved actions, if any, belong to the past too).
	r := a
	r.Status, r.EndsAt = alert.StatusResolved, now
	return h.step(ctx, []alert.Alert{r})
}

// approveAll approves every action after mark that awaits approval (a test's approve: true),
// settling the harness after each round.
func (h *harness) approveAll(ctx context.Context, mark int64, now time.Time) error {
	return h.approvePrior(ctx, "", mark, now)
}

// approvePrior approves the actions of rule ("": of every rule) after mark that await approval
// (by as many approvers as they need), settling the harness after each round.
func (h *harness) approvePrior(ctx context.Context, rule string, mark int64, now time.Time) error {
	for i := 1; i <= 3; i++ {
		as, err := h.allActionsAfter(ctx, mark)
		if err != nil {
			return err
		}
		waiting := false
		for _, x := range as {
			if (rule == "" || x.Rule == rule) && x.State == vocab.StateAwaitingApproval {
				waiting = true
				// No approvals.ttl: a prior approval is not late.
				approvals := engine.Approvals{Store: h.st, Now: func() time.Time { return now }}
				if _, err := approvals.Decide(ctx, x.ID, fmt.Sprintf("rules-test-%d", i), store.DecisionApprove, "rules-test"); err != nil && !errors.Is(err, store.ErrNotAwaiting) {
					return err
				}
			}
		}
		if !waiting {
			return nil
		}
		if err := h.settle(ctx); err != nil {
			return err
		}
	}
	return nil
}

// checkActed fails unless pa's rule ran an action (succeeded, verifying or dry run) after mark.
func (h *harness) checkActed(ctx context.Context, pa PriorAction, mark int64) error {
	as, err := h.allActionsAfter(ctx, mark)
	if err != nil {
		return err
	}
	acted := false
	var states []string
	for _, x := range as {
		if x.Rule == pa.Rule && x.Phase == vocab.PhaseActions {
			acted = acted || x.State == vocab.StateSucceeded || x.State == vocab.StateDryRun || x.State == vocab.StateVerifying
			states = append(states, x.Handler+" "+string(x.State)+" "+string(x.Reason))
		}
	}
	if !acted {
		why := "it does not match the alert"
		if len(states) > 0 {
			why = "its actions ended " + strings.Join(states, ", ")
		}
		return lineErr(pa.Line, "actions_in_last: rule %q did not act on this alert %s before now (%s)", pa.Rule, pa.Ago, why)
	}
	return nil
}

package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// commit writes a plan in one transaction: the firing set, the refreshed and upserted incidents,
// the `for` timers, audit rows and actions of the incidents that are new, the resolutions and what
// they plan. Handler lookups are made outside the transaction (see inPlanTx), which then runs
// again from scratch. It returns how many incidents it opened and resolved; the counters of the
// actions that failed at planning are incremented once it committed.
func (e *Engine) commit(ctx context.Context, pl *plan) (opened, resolved int, err error) {
	var p planner
	lk := &lookups{}
	err = e.inPlanTx(ctx, lk, func(tx pgx.Tx) error {
		p = planner{ctx: ctx, e: e, set: pl.set, now: pl.now, firing: pl.firing, lk: lk}
		var err error
		opened, resolved, err = p.write(tx, pl)
		return err
	})
	if err != nil {
		return 0, 0, err
	}
	p.committed()
	return opened, resolved, nil
}

// write writes pl in tx; see commit.
func (p *planner) write(tx pgx.Tx, pl *plan) (opened, resolved int, err error) {
	ctx, st := p.ctx, p.e.st
	if pl.recordFiring { // the set firing() reads, for later batches
		if err := st.RecordFiringTx(ctx, tx, pl.alerts, pl.now); err != nil {
			return 0, 0, err
		}
	}
	if err := st.RefreshIncidentsTx(ctx, tx, pl.set.ForRules(), pl.refresh); err != nil {
		return 0, 0, err
	}
	res, err := st.UpsertIncidentsTx(ctx, tx, pl.upserts)
	if err != nil {
		return 0, 0, err
	}
	opened, timers, err := p.opened(pl, res)
	if err != nil {
		return 0, 0, err
	}
	// Timers first: a resolution later in the same batch deletes them.
	if err := st.InsertTimersTx(ctx, tx, timers); err != nil {
		return 0, 0, err
	}
	rs, err := st.ResolveIncidentsTx(ctx, tx, pl.resolves, pl.now)
	if err != nil {
		return 0, 0, err
	}
	if err := p.planResolves(ctx, tx, rs); err != nil {
		return 0, 0, err
	}
	p.resolved(rs)
	return opened, len(rs), p.flush(ctx, tx)
}

// opened audits the incidents the upserts inserted and plans what each needs: a pending one its
// `for` timer (returned), a firing one its actions.
func (p *planner) opened(pl *plan, res []store.UpsertResult) (int, []store.TimerInsert, error) {
	opened := 0
	var timers []store.TimerInsert
	steps := 0
	for i := range pl.opens {
		steps += len(pl.opens[i].actions)
	}
	// Sized once: a batch opens thousands of incidents, and a NewAction is large.
	p.actions = slices.Grow(p.actions, steps)
	p.audits = slices.Grow(p.audits, len(res))
	for _, r := range res {
		if !r.Inserted || r.State == vocab.IncidentResolved {
			continue
		}
		i, ok := pl.index[keyOf(r.Rule, r.Fingerprint, r.StartsAt)]
		if !ok {
			return 0, nil, fmt.Errorf("incident %d (%s, %s, %s) does not match any alert of the batch", r.ID, r.Rule, r.Fingerprint, r.StartsAt)
		}
		opened++
		o := &pl.opens[i]
		p.audit(store.AuditInsert{IncidentID: r.ID, Kind: store.AuditIncident, Actor: "engine", Reason: string(r.State),
			RuleHash: o.rule.FileHash, Detail: map[string]any{"alert": o.Alert.Name, "fingerprint": o.Alert.Fingerprint}})
		switch r.State {
		case vocab.IncidentPending:
			timers = append(timers, store.TimerInsert{IncidentID: r.ID, Kind: store.TimerFor, DueAt: o.dueAt})
		case vocab.IncidentFiring:
			if !p.place(r.ID, o.rule, o.actions, o.Alert.ReceivedAt) {
				continue
			}
			if o.escalate != nil {
				p.place(r.ID, o.rule, o.escalate, p.now)
			} else { // a lookup failed: the escalation was not drafted
				p.plan(r.ID, o.rule, vocab.PhaseEscalate, o.Alert, p.now)
			}
		}
	}
	return opened, timers, nil
}

// resolved audits the incidents that resolved and plans the on_resolved steps of those that had
// fired, from the alert each stores.
func (p *planner) resolved(rs []store.Resolved) {
	for _, r := range rs {
		rule := p.set.Rule(r.Rule)
		hash := ""
		if rule != nil {
			hash = rule.FileHash
		}
		p.audit(store.AuditInsert{IncidentID: r.ID, Kind: store.AuditIncident, Actor: "engine", Reason: string(vocab.IncidentResolved),
			RuleHash: hash, Detail: map[string]any{"previous_state": r.PrevState}})
		if r.PrevState == vocab.IncidentFiring && rule != nil {
			p.plan(r.ID, rule, vocab.PhaseOnResolved, r.Alert, r.Alert.ReceivedAt)
		}
	}
}

// planner collects the actions and audit rows of one transaction and writes them in bulk.
type planner struct {
	// ctx is the context of the transaction the planner plans in.
	ctx context.Context
	// lk holds the handler lookups made for this planner's transaction (see inPlanTx). Without
	// it, lookups are made in place, inside the transaction.
	lk      *lookups
	e       *Engine
	set     *rules.Set
	now     time.Time
	firing  rules.FiringSet
	actions []store.NewAction
	audits  []store.AuditInsert
	// failedAtPlan are (rule, handler) of steps that failed to render: counted after the commit.
	failedAtPlan [][2]string
}

// committed counts what the planner decided, once its transaction committed.
func (p *planner) committed() {
	for _, f := range p.failedAtPlan {
		p.e.m.actions.WithLabelValues(f[0], f[1], string(vocab.StateFailed)).Inc()
	}
}

func (p *planner) audit(a store.AuditInsert) {
	if a.At.IsZero() {
		a.At = p.now
	}
	p.audits = append(p.audits, a)
}

// plan renders and builds every step of a rule's phase for an incident. A step whose params do not
// render or build is recorded failed (bad_param); the steps after it are skipped (cancelled) and,
// for the actions phase, the rule's escalation is planned.
//
// basis is when the evidence for these steps was current (see store.NewAction.BasisAt).
func (p *planner) plan(incidentID int64, rule *rules.Rule, phase vocab.Phase, a alert.Alert, basis time.Time) {
	ds := p.e.matcher().draft(rule, phase, a, p.now, p.firing)
	if p.place(incidentID, rule, ds, basis) && phase == vocab.PhaseActions {
		p.plan(incidentID, rule, vocab.PhaseEscalate, a, p.now)
	}
}

// place gives an incident the drafted steps of a rule's phase: each is stamped and located (see
// locate). A step that failed, or whose lookup failed, is recorded failed (bad_param) and audited,
// and the steps after it are cancelled. place reports whether a step failed; ds is left as it is
// (a transaction run again places it again).
func (p *planner) place(incidentID int64, rule *rules.Rule, ds []draft, basis time.Time) (broken bool) {
	for i := range ds {
		d := &ds[i]
		na := d.na
		if broken {
			na = newAction(rule, d.na.Phase, d.na.Step, d.na.Handler)
			na.State, na.Reason = vocab.StateSkipped, vocab.ReasonCancelled
		}
		na.IncidentID, na.At, na.BasisAt = incidentID, p.e.now(), basis
		if !broken {
			err := d.err
			if err == nil {
				err = p.placeStep(&na, d)
			}
			if err != nil {
				p.fail(&na, rule, err)
				broken = true
			}
		}
		p.actions = append(p.actions, na)
	}
	return broken
}

// placeStep locates a drafted step that rendered and built; a handler that wants one target per
// incident gets the incident's id in it.
func (p *planner) placeStep(na *store.NewAction, d *draft) error {
	if err := p.locate(na, d.act, d.key); err != nil {
		return err
	}
	if p.e.cur().specs[na.Handler].TargetPerIncident {
		na.Target += " incident/" + itoa(na.IncidentID)
	}
	return nil
}

// fail records a step that could not be planned: failed, reason bad_param, audited, and counted
// once the transaction commits.
func (p *planner) fail(na *store.NewAction, rule *rules.Rule, err error) {
	na.State, na.Reason, na.Error = vocab.StateFailed, vocab.ReasonBadParam, err.Error()
	p.failedAtPlan = append(p.failedAtPlan, [2]string{rule.Name, na.Handler})
	p.audit(store.AuditInsert{IncidentID: na.IncidentID, Kind: store.AuditAction, Actor: "engine",
		Reason: string(vocab.ReasonBadParam), RuleHash: rule.FileHash,
		Detail: map[string]any{"phase": na.Phase, "step": na.Step, "handler": na.Handler, "state": na.State, "error": err.Error()}})
}

// flush writes the collected actions and audit rows.
func (p *planner) flush(ctx context.Context, tx pgx.Tx) error {
	if err := p.e.st.PlanActionsTx(ctx, tx, p.actions); err != nil {
		return err
	}
	return p.e.st.AuditTx(ctx, tx, p.audits)
}

// planResolves plans, for the incidents that just resolved, the resolve event of every
// notification that declared one (handlers.Spec.ResolveParams) and was sent.
func (p *planner) planResolves(ctx context.Context, tx pgx.Tx, rs []store.Resolved) error {
	var names []string
	specs := p.e.cur().specs
	for n, spec := range specs {
		if spec.ResolveParams != nil {
			names = append(names, n)
		}
	}
	if len(names) == 0 || len(rs) == 0 {
		return nil
	}
	ids := make([]int64, len(rs))
	for i, r := range rs {
		ids[i] = r.ID
	}
	sent, err := p.e.st.SucceededActionsTx(ctx, tx, ids, names)
	if err != nil {
		return err
	}
	step := map[int64]int{}
	for _, a := range sent {
		params, ok := specs[a.Handler].ResolveParams(handlers.Params(a.Params))
		if !ok {
			continue
		}
		na := store.NewAction{IncidentID: a.IncidentID, Phase: vocab.PhaseResolve, Step: step[a.IncidentID], Rule: a.Rule,
			RuleHash: a.RuleHash, Handler: a.Handler, Target: a.Target, Scope: a.Scope, Class: a.Class, Mode: a.Mode,
			Params: params, Approval: string(handlers.ApprovalNone), Timeout: time.Duration(a.TimeoutMS) * time.Millisecond,
			State: vocab.StatePlanned, At: p.now, BasisAt: p.now}
		step[a.IncidentID]++
		p.actions = append(p.actions, na)
	}
	return nil
}

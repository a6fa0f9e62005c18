package engine

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Process evaluates every rule against alerts and commits, in one transaction, the incidents they
// open or resolve, the actions they plan and the audit trail. Replaying the same alerts is a no-op.
// An error means nothing was committed; the caller retries (the bus keeps the message).
func (e *Engine) Process(ctx context.Context, alerts []alert.Alert) error {
	if len(alerts) == 0 {
		return nil
	}
	set := e.rules.Load()
	now := e.now()
	firing, err := e.firingSet(ctx, set, alerts)
	if err != nil {
		return err
	}
	alerts = latestPerID(alerts)

	var ups []store.IncidentUpsert
	var resolves []store.ResolveKey
	// A firing alert a `for` rule no longer matches still refreshes that rule's pending incident,
	// so the re-check at expiry sees the alert as it is now.
	var refresh []store.RefreshKey
	idx := map[upsertKey]int{}
	add := func(u store.IncidentUpsert) {
		k := keyOf(u.Rule, u.Alert.Fingerprint, u.Alert.StartsAt)
		if i, ok := idx[k]; ok {
			// A firing and a resolved tombstone for one key in one batch: keep the firing upsert; the
			// resolution later in the same transaction resolves it. Otherwise the later one wins.
			if ups[i].State == vocab.IncidentResolved || u.State == vocab.IncidentResolved {
				if u.State != vocab.IncidentResolved {
					ups[i] = u
				}
				return
			}
			ups[i] = u
			return
		}
		idx[k] = len(ups)
		ups = append(ups, u)
	}
	for _, a := range alerts {
		probe := a
		if a.Status == alert.StatusResolved {
			resolves = append(resolves, store.ResolveKey{Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Alert: a})
			// A resolved alert never seen firing leaves a resolved tombstone for every rule its
			// firing self would have matched, so a late firing of the same episode is a no-op.
			probe.Status = alert.StatusFiring
		}
		env := rules.NewEnv(probe, now, firing)
		for _, r := range set.Rules {
			ok, err := r.Match(env)
			if err != nil {
				e.m.ruleErrors.WithLabelValues(r.Name).Inc()
				e.log.Warn("rule evaluation failed", "rule", r.Name, "alert", a.Name, "fingerprint", a.Fingerprint, "err", err)
				continue
			}
			if !ok {
				if r.For > 0 && a.Status == alert.StatusFiring {
					refresh = append(refresh, store.RefreshKey{Rule: r.Name, Alert: a})
				}
				continue
			}
			u := store.IncidentUpsert{Rule: r.Name, RuleHash: r.FileHash, Alert: a, At: now}
			switch {
			case a.Status == alert.StatusResolved:
				u.State = vocab.IncidentResolved
			case r.For > 0 && now.Before(a.StartsAt.Add(r.For)):
				e.m.ruleMatches.WithLabelValues(r.Name).Inc()
				u.State = vocab.IncidentPending
			default:
				e.m.ruleMatches.WithLabelValues(r.Name).Inc()
				u.State = vocab.IncidentFiring
			}
			add(u)
		}
	}
	if len(ups) == 0 && len(resolves) == 0 && len(refresh) == 0 && !set.UsesFiring {
		return nil
	}
	// Concurrent batches (consumers, replicas) lock rows in key order: no deadlocks between them.
	slices.SortFunc(ups, func(a, b store.IncidentUpsert) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint), a.Alert.StartsAt.Compare(b.Alert.StartsAt))
	})
	for i, u := range ups {
		idx[keyOf(u.Rule, u.Alert.Fingerprint, u.Alert.StartsAt)] = i
	}
	slices.SortFunc(refresh, func(a, b store.RefreshKey) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint), a.Alert.StartsAt.Compare(b.Alert.StartsAt))
	})

	var opened, resolved int
	var p planner
	lk := &lookups{}
	err = e.inPlanTx(ctx, lk, func(tx pgx.Tx) error {
		opened, resolved = 0, 0
		p = planner{ctx: ctx, e: e, set: set, now: now, firing: firing, lk: lk}
		if set.UsesFiring { // the set firing() reads, for later batches
			if err := e.st.RecordFiringTx(ctx, tx, alerts, now); err != nil {
				return err
			}
		}
		if err := e.st.RefreshIncidentsTx(ctx, tx, refresh); err != nil {
			return err
		}
		res, err := e.st.UpsertIncidentsTx(ctx, tx, ups)
		if err != nil {
			return err
		}
		var timers []store.TimerInsert
		for _, r := range res {
			if !r.Inserted || r.State == vocab.IncidentResolved {
				continue
			}
			i, ok := idx[keyOf(r.Rule, r.Fingerprint, r.StartsAt)]
			if !ok {
				return fmt.Errorf("incident %d (%s, %s, %s) does not match any alert of the batch", r.ID, r.Rule, r.Fingerprint, r.StartsAt)
			}
			opened++
			u := ups[i]
			rule := set.Rule(r.Rule)
			p.audit(store.AuditInsert{IncidentID: r.ID, Kind: store.AuditIncident, Actor: "engine", Reason: string(r.State),
				RuleHash: rule.FileHash, Detail: map[string]any{"alert": u.Alert.Name, "fingerprint": u.Alert.Fingerprint}})
			switch r.State {
			case vocab.IncidentPending:
				timers = append(timers, store.TimerInsert{IncidentID: r.ID, Kind: store.TimerFor, DueAt: u.Alert.StartsAt.Add(rule.For)})
			case vocab.IncidentFiring:
				p.plan(r.ID, rule, vocab.PhaseActions, u.Alert, u.Alert.ReceivedAt)
			}
		}
		// Timers first: a resolution later in the same batch deletes them.
		if err := e.st.InsertTimersTx(ctx, tx, timers); err != nil {
			return err
		}
		rs, err := e.st.ResolveIncidentsTx(ctx, tx, resolves, now)
		if err != nil {
			return err
		}
		resolved = len(rs)
		if err := p.planResolves(ctx, tx, rs); err != nil {
			return err
		}
		for _, r := range rs {
			rule := set.Rule(r.Rule)
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
		return p.flush(ctx, tx)
	})
	if err != nil {
		return err
	}
	p.committed()
	e.m.incidents.WithLabelValues("opened").Add(float64(opened))
	e.m.incidents.WithLabelValues("resolved").Add(float64(resolved))
	if opened > 0 || resolved > 0 {
		e.Kick()
	}
	return nil
}

type upsertKey struct {
	rule, fp string
	starts   int64
}

// keyOf is an incident's key as the database stores it (timestamps have microsecond precision).
func keyOf(rule, fp string, starts time.Time) upsertKey {
	return upsertKey{rule, fp, starts.UnixMicro()}
}

// latestPerID keeps one alert per (fingerprint, startsAt, status): the last one received.
func latestPerID(as []alert.Alert) []alert.Alert {
	seen := make(map[string]int, len(as))
	out := as[:0:0]
	for _, a := range as {
		id := a.ID()
		if i, ok := seen[id]; ok {
			if a.ReceivedAt.After(out[i].ReceivedAt) {
				out[i] = a
			}
			continue
		}
		seen[id] = len(out)
		out = append(out, a)
	}
	return out
}

// firingSet is the snapshot behind firing(): the alerts of open incidents, every firing alert
// recorded while a rule uses firing() (received within firingTTL), and this batch's firing alerts. It is
// only read from the store when some rule uses firing().
func (e *Engine) firingSet(ctx context.Context, set *rules.Set, batch []alert.Alert) (rules.FiringSet, error) {
	if !set.UsesFiring {
		return noneFiring{}, nil
	}
	open, err := e.st.FiringAlerts(ctx, e.now().Add(-firingTTL))
	if err != nil {
		return nil, err
	}
	fs := firingSnapshot{}
	for _, o := range open {
		fs[o.Name] = append(fs[o.Name], o.Labels)
	}
	for _, a := range batch {
		if a.Status == alert.StatusFiring {
			fs[a.Name] = append(fs[a.Name], a.Labels)
		}
	}
	return fs, nil
}

// firingTTL is how long a firing alert counts for firing() without being received again:
// Alertmanager re-sends firing alerts every repeat_interval (4h by default), probes every 5m.
const firingTTL = 24 * time.Hour

type noneFiring struct{}

func (noneFiring) Firing(string, map[string]string) bool { return false }

type firingSnapshot map[string][]map[string]string

func (f firingSnapshot) Firing(name string, labels map[string]string) bool {
	for _, ls := range f[name] {
		match := true
		for k, v := range labels {
			if ls[k] != v {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
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
	var steps []*rules.Action
	switch phase {
	case vocab.PhaseActions:
		steps = rule.Actions
	case vocab.PhaseEscalate:
		steps = rule.Escalate
	case vocab.PhaseOnResolved:
		steps = rule.OnResolved
	}
	if len(steps) == 0 {
		return
	}
	env := rules.NewEnv(a, p.now, p.firing)
	broken := false
	for i, s := range steps {
		na := p.e.newAction(incidentID, rule, phase, i, s)
		na.BasisAt = basis
		switch {
		case broken:
			na.State, na.Reason = vocab.StateSkipped, vocab.ReasonCancelled
		default:
			if err := p.build(&na, s, env); err != nil {
				na.State, na.Reason, na.Error = vocab.StateFailed, vocab.ReasonBadParam, err.Error()
				p.failedAtPlan = append(p.failedAtPlan, [2]string{rule.Name, s.Handler})
				p.audit(store.AuditInsert{IncidentID: incidentID, Kind: store.AuditAction, Actor: "engine",
					Reason: string(vocab.ReasonBadParam), RuleHash: rule.FileHash,
					Detail: map[string]any{"phase": phase, "step": i, "handler": s.Handler, "state": na.State, "error": err.Error()}})
				broken = true
			}
		}
		p.actions = append(p.actions, na)
	}
	if broken && phase == vocab.PhaseActions {
		p.plan(incidentID, rule, vocab.PhaseEscalate, a, p.now)
	}
}

// newAction fills what every planned action has, before rendering.
func (e *Engine) newAction(incidentID int64, rule *rules.Rule, phase vocab.Phase, step int, s *rules.Action) store.NewAction {
	mode := rule.Mode
	if mode == "" {
		mode = vocab.ModeEnforce
	}
	return store.NewAction{IncidentID: incidentID, Phase: phase, Step: step, Rule: rule.Name, RuleHash: rule.FileHash,
		Handler: s.Handler, Mode: mode, State: vocab.StatePlanned, At: e.now(), Params: map[string]any{}}
}

// build renders the step's params and builds the action once, to learn its target, scope, class,
// approval and timeout. Execution builds again from the stored params.
func (p *planner) build(na *store.NewAction, s *rules.Action, env *rules.Env) error {
	e := p.e
	h, ok := e.o.Handlers.Get(s.Handler)
	if !ok {
		return fmt.Errorf("handler %q is not registered", s.Handler)
	}
	spec := e.specs[s.Handler]
	na.Approval = string(spec.DefaultApproval)
	if s.Approval != "" {
		na.Approval = s.Approval
	}
	if na.Approval == "" {
		na.Approval = string(handlers.ApprovalNone)
	}
	na.Timeout = e.o.ActionTimeout
	if spec.DefaultTimeout > 0 {
		na.Timeout = spec.DefaultTimeout
	}
	if s.Timeout > 0 {
		na.Timeout = s.Timeout
	}
	params, err := s.Render(env)
	if err != nil {
		return err
	}
	// Labels are the sender's: bound what one action stores and hands to its handler. The
	// params are not stored (na.Params stays empty); the error says their size.
	raw, err := json.Marshal(params)
	if err != nil {
		return fmt.Errorf("params: %w", err)
	}
	if len(raw) > e.o.MaxParamsBytes {
		return fmt.Errorf("rendered params are %d bytes, over the limit of %d bytes", len(raw), e.o.MaxParamsBytes)
	}
	na.Params = params
	for _, p := range spec.Params {
		if v, ok := params[p.Name]; ok {
			if err := handlers.CheckType(p, v); err != nil {
				return err
			}
		}
	}
	act, err := h.Build(handlers.Params(maps.Clone(params)))
	if err != nil {
		return err
	}
	na.Class = classOf(spec, act)
	if na.Approval == string(handlers.ApprovalRequired) {
		na.State = vocab.StateAwaitingApproval
		na.ApprovalsRequired = s.ApprovalsRequired
	}
	if err := p.locate(na, act, s.Handler+"\x00"+string(raw)); err != nil {
		return err
	}
	if spec.TargetPerIncident {
		na.Target += " incident/" + itoa(na.IncidentID)
	}
	return nil
}

// classOf is the class of a built action: its handler's. An action may say it is disruptive
// (a rule may ask for that), but a disruptive handler's action is notify only when its handler
// lets the rule choose (handlers.Spec.ClassParam, http.request's class): a notify action runs
// when paused and spends no budget, so a lower class is never taken on an action's word.
func classOf(spec handlers.Spec, act handlers.Action) vocab.Class {
	c, ok := act.(handlers.Classifier)
	if !ok {
		return spec.Class
	}
	if got := c.Class(); got == vocab.ClassDisruptive || spec.Class != vocab.ClassDisruptive || spec.ClassParam != "" {
		return got
	}
	return vocab.ClassDisruptive
}

// locate sets the action's target, scope, member and (awaiting approval) evidence. When they need
// a lookup (handlers.Resolver, handlers.Describer), it is taken from p.lk, made outside the
// transaction; a lookup not made yet is noted there and the action left unlocated: inPlanTx rolls
// the transaction back and runs it again once the lookup is made.
func (p *planner) locate(na *store.NewAction, act handlers.Action, key string) error {
	_, resolves := act.(handlers.Resolver)
	_, describes := act.(handlers.Describer)
	describe := describes && na.State == vocab.StateAwaitingApproval
	l := &lookup{act: act, describe: describe}
	switch {
	case !resolves && !describe:
		l.locate()
	case p.lk != nil && !p.lk.inPlace:
		if describe {
			key = "describe\x00" + key
		}
		done, ok := p.lk.done[key]
		if !ok {
			p.lk.need(key, l)
			return nil
		}
		l = done
	case p.ctx != nil: // a caller that cannot run its transaction again: in place, bounded
		l.run(p.ctx, p.e.log)
	default:
		l.locate()
	}
	na.Target, na.Scope, na.Member, na.Evidence = l.target, l.scope, l.member, l.evidence
	return l.err
}

// resolveTimeout bounds one handler lookup while planning.
const resolveTimeout = 5 * time.Second

// lookupRounds bounds how often a planning transaction is run again for lookups it met: each
// round makes the lookups the last one met; only when concurrent changes keep bringing new ones
// are the rest made in place.
const lookupRounds = 3

// lookups are the calls planning makes to handlers' peers (handlers.Resolver, Describer), made
// with no transaction open: they may be slow, and a row lock or the kill switch's lock held
// meanwhile would stall every other replica and POST /api/v1/pause.
type lookups struct {
	done    map[string]*lookup // by handler and rendered params
	missing map[string]*lookup
	inPlace bool // the last round: lookups are made inside the transaction
}

func (lk *lookups) need(key string, l *lookup) {
	if lk.missing == nil {
		lk.missing = map[string]*lookup{}
	}
	lk.missing[key] = l
}

// lookup is one built action's lookup and what it found.
type lookup struct {
	act                             handlers.Action
	describe                        bool
	target, scope, member, evidence string
	err                             error // the handler's code panicked
}

// run resolves the action's target and describes it for its approver, each bounded. It often
// runs in a goroutine of its own, beyond the planning transaction's panic recovery: a panic in the
// handler's code fails this action alone.
func (l *lookup) run(ctx context.Context, log *slog.Logger) {
	l.err = calm(func() error { l.lookUp(ctx, log); return nil })
}

func (l *lookup) lookUp(ctx context.Context, log *slog.Logger) {
	if r, ok := l.act.(handlers.Resolver); ok {
		// The target needs a lookup (a pod's workload); on failure Target falls back.
		rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		if err := r.Resolve(rctx); err != nil {
			log.Warn("could not resolve the action's target", "err", err)
		}
		cancel()
	}
	l.locate()
	if d, ok := l.act.(handlers.Describer); ok && l.describe {
		dctx, cancel := context.WithTimeout(ctx, resolveTimeout)
		text, err := d.Describe(dctx)
		cancel()
		if err != nil {
			text = "could not describe the situation: " + err.Error()
		}
		l.evidence = text
	}
}

// calm runs fn, a call into a handler's code, turning a panic into an error.
func calm(fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("panic in the handler: %v", v)
		}
	}()
	return fn()
}

func (l *lookup) locate() {
	l.target, l.scope = l.act.Target(), l.act.Scope()
	if m, ok := l.act.(handlers.WorkloadMember); ok {
		l.member = m.Member()
	}
}

// errLookups rolls back a planning transaction that met lookups not made yet.
var errLookups = errors.New("planning needs handler lookups")

// inPlanTx runs fn, which plans with lk, in a transaction. When the planning met lookups not made
// yet, the transaction is rolled back, the lookups are made (concurrently, bounded) with no
// transaction open, and fn runs again in a new transaction: fn must start from scratch each time.
func (e *Engine) inPlanTx(ctx context.Context, lk *lookups, fn func(pgx.Tx) error) error {
	for round := 1; ; round++ {
		lk.missing, lk.inPlace = nil, round > lookupRounds
		err := e.st.InTx(ctx, func(tx pgx.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			if len(lk.missing) > 0 {
				return errLookups
			}
			return nil
		})
		if !errors.Is(err, errLookups) {
			return err
		}
		var wg sync.WaitGroup
		sem := make(chan struct{}, 8)
		for _, l := range lk.missing {
			wg.Add(1)
			sem <- struct{}{}
			go func() { defer wg.Done(); defer func() { <-sem }(); l.run(ctx, e.log) }()
		}
		wg.Wait()
		if lk.done == nil {
			lk.done = map[string]*lookup{}
		}
		maps.Copy(lk.done, lk.missing)
	}
}

// flush writes the collected actions and audit rows.
func (p *planner) flush(ctx context.Context, tx pgx.Tx) error {
	if _, err := p.e.st.InsertActionsTx(ctx, tx, p.actions); err != nil {
		return err
	}
	return p.e.st.AuditTx(ctx, tx, p.audits)
}

// planResolves plans, for the incidents that just resolved, the resolve event of every
// notification that declared one (handlers.Spec.ResolveParams) and was sent.
func (p *planner) planResolves(ctx context.Context, tx pgx.Tx, rs []store.Resolved) error {
	var names []string
	for n, spec := range p.e.specs {
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
		params, ok := p.e.specs[a.Handler].ResolveParams(handlers.Params(a.Params))
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

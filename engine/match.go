package engine

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Planning is split in two. match decides, from the batch, the rules, the firing snapshot and the
// time alone (no store, no network, no clock), what the batch asks for: a plan. commit (commit.go)
// writes the plan in one transaction. What only the rows can tell is settled there: whether an
// incident is new (only a new incident is audited, gets its `for` timer or its actions), its id,
// which incidents a resolution closes and what they had sent (their on_resolved and resolve steps
// are drafted then, from the rows).

// plan is what one batch of alerts asks of the store.
type plan struct {
	now time.Time
	// set and firing are the rules and the firing snapshot the plan was made with: commit drafts
	// with them what only the rows decide.
	set    *rules.Set
	firing rules.FiringSet
	// alerts is the batch, one alert per id (the last received).
	alerts []alert.Alert
	// recordFiring is set when some rule calls firing(): the batch's firing alerts are recorded
	// for the batches after it.
	recordFiring bool
	// upserts are the incident upserts, one per key, in key order: concurrent batches
	// (consumers, replicas) lock rows in that order, so they do not deadlock.
	upserts []store.IncidentUpsert
	// opens says, for each upsert (same index), what a new incident of it needs.
	opens []opening
	// index finds an upsert by its key.
	index map[upsertKey]int
	// refresh names the pending incidents of `for` rules a firing alert no longer matches, one key
	// per alert (the rules are set.ForRules() but the key's Except): their alert is refreshed, so
	// the re-check at expiry sees the alert as it is now. In episode order.
	refresh []store.RefreshKey
	// resolves are the episodes that resolved: every open incident of each is resolved, its
	// planned and awaiting actions cancelled.
	resolves []store.ResolveKey
	// matches counts, per rule, the alerts that matched it firing or pending
	// (responder_rule_matches_total).
	matches map[string]int
	// failures are the rule evaluations that failed (responder_rule_evaluation_failures_total).
	failures []ruleFailure
	// candidates is evaluate's buffer.
	candidates []*rules.Rule
}

// opening is one incident upsert and what the incident needs if the upsert opens it (its key is
// new; otherwise the upsert only refreshes the open incident's alert). A resolved upsert is a
// tombstone: a resolved alert never seen firing, so that a late firing of the same episode is a
// no-op.
type opening struct {
	*store.IncidentUpsert
	rule *rules.Rule
	// dueAt is when a pending incident's `for` timer is due.
	dueAt time.Time
	// actions are the steps of the rule's actions phase drafted for a firing incident; escalate
	// is the rule's escalation, drafted when one of those steps failed (the incident then
	// escalates at once).
	actions, escalate []draft
}

// ruleFailure is one rule evaluation that failed.
type ruleFailure struct {
	rule  string
	alert alert.Alert
	err   error
}

// draft is one step of a rule's phase rendered and built for an alert, before it belongs to an
// incident: placing it (planner.place) gives it the incident's id, its times and its target.
type draft struct {
	na store.NewAction
	// act is the built action; nil when the step failed or was cancelled.
	act handlers.Action
	// key names the step's handler and rendered params: the key of its lookups (see locate).
	key string
	// err is why the step failed to render or build: it is recorded failed, reason bad_param, and
	// the steps after it are cancelled.
	err error
}

// matcher drafts actions the way the engine's options and handlers say; match and draft need
// nothing else.
type matcher struct {
	handlers       *handlers.Registry
	specs          map[string]handlers.Spec
	actionTimeout  time.Duration
	maxParamsBytes int
}

func (e *Engine) matcher() matcher {
	l := e.cur()
	return matcher{handlers: l.Handlers, specs: l.specs, actionTimeout: l.ActionTimeout, maxParamsBytes: l.MaxParamsBytes}
}

// match evaluates every rule against the batch at now, with firing the snapshot behind firing().
// It is pure: the same arguments give the same plan, and it neither reads nor writes anything
// else (handlers' Build validates params; it calls nobody).
func (m matcher) match(set *rules.Set, batch []alert.Alert, firing rules.FiringSet, now time.Time) *plan {
	pl := &plan{now: now, set: set, firing: firing, alerts: latestPerID(batch), recordFiring: set.UsesFiring,
		index: map[upsertKey]int{}, matches: map[string]int{}}
	for _, a := range pl.alerts {
		pl.evaluate(a)
	}
	pl.sort()
	m.open(pl)
	return pl
}

// open says, for each upsert of pl, what its incident needs if the upsert opens it: a pending
// incident its `for` timer, a firing one its actions (drafted in one allocation for the batch).
func (m matcher) open(pl *plan) {
	pl.opens = make([]opening, len(pl.upserts))
	steps := 0
	for i := range pl.opens {
		o := &pl.opens[i]
		o.IncidentUpsert, o.rule = &pl.upserts[i], pl.set.Rule(pl.upserts[i].Rule)
		if o.State == vocab.IncidentFiring {
			steps += len(o.rule.Actions)
		}
	}
	slab := make([]draft, 0, steps)
	for i := range pl.opens {
		o := &pl.opens[i]
		switch o.State {
		case vocab.IncidentPending:
			o.dueAt = o.Alert.StartsAt.Add(o.rule.For)
		case vocab.IncidentFiring:
			n := len(slab)
			slab = m.appendDrafts(slab, o.rule, vocab.PhaseActions, o.Alert, pl.now, pl.firing)
			o.actions = slab[n:len(slab):len(slab)]
			if failed(o.actions) {
				o.escalate = m.draft(o.rule, vocab.PhaseEscalate, o.Alert, pl.now, pl.firing)
			}
		}
	}
}

// evaluate runs the rules on one alert of the batch: the candidates of the set's index, which give
// the matches and failures every rule would give (rules.Set.Candidates).
func (pl *plan) evaluate(a alert.Alert) {
	probe := a
	if a.Status == alert.StatusResolved {
		pl.resolves = append(pl.resolves, store.ResolveKey{Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Alert: a})
		// A resolved alert never seen firing leaves a resolved tombstone for every rule its
		// firing self would have matched, so a late firing of the same episode is a no-op.
		probe.Status = alert.StatusFiring
	}
	env := rules.NewEnv(probe, pl.now, pl.firing)
	// except are the `for` rules the alert matched or failed on: a firing alert refreshes the
	// pending incidents of every other `for` rule (one key for them all).
	var except []string
	pl.candidates = pl.set.Candidates(env, pl.candidates[:0])
	for _, r := range pl.candidates {
		ok, err := r.Match(env)
		if r.For > 0 && (ok || err != nil) {
			except = append(except, r.Name)
		}
		if err != nil {
			pl.failures = append(pl.failures, ruleFailure{rule: r.Name, alert: a, err: err})
			continue
		}
		if !ok {
			continue
		}
		u := store.IncidentUpsert{Rule: r.Name, RuleHash: r.FileHash, Alert: a, At: pl.now}
		switch {
		case a.Status == alert.StatusResolved:
			u.State = vocab.IncidentResolved
		case r.For > 0 && pl.now.Before(a.StartsAt.Add(r.For)):
			pl.matches[r.Name]++
			u.State = vocab.IncidentPending
		default:
			pl.matches[r.Name]++
			u.State = vocab.IncidentFiring
		}
		pl.add(u)
	}
	// A firing alert a `for` rule no longer matches still refreshes that rule's pending incident.
	if a.Status == alert.StatusFiring && len(except) < len(pl.set.ForRules()) {
		pl.refresh = append(pl.refresh, store.RefreshKey{Alert: a, Except: except})
	}
}

// add keeps one upsert per incident key.
func (pl *plan) add(u store.IncidentUpsert) {
	k := keyOf(u.Rule, u.Alert.Fingerprint, u.Alert.StartsAt)
	i, ok := pl.index[k]
	if !ok {
		pl.index[k] = len(pl.upserts)
		pl.upserts = append(pl.upserts, u)
		return
	}
	// A firing and a resolved tombstone for one key in one batch: keep the firing upsert; the
	// resolution later in the same transaction resolves it. Otherwise the later one wins, unless
	// both are tombstones.
	if u.State != vocab.IncidentResolved {
		pl.upserts[i] = u
	}
}

// sort puts the upserts and refreshes in key order.
func (pl *plan) sort() {
	slices.SortFunc(pl.upserts, func(a, b store.IncidentUpsert) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint), a.Alert.StartsAt.Compare(b.Alert.StartsAt))
	})
	for i, u := range pl.upserts {
		pl.index[keyOf(u.Rule, u.Alert.Fingerprint, u.Alert.StartsAt)] = i
	}
	slices.SortFunc(pl.refresh, func(a, b store.RefreshKey) int {
		return cmp.Or(cmp.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint), a.Alert.StartsAt.Compare(b.Alert.StartsAt))
	})
}

// empty reports whether the plan writes nothing.
func (pl *plan) empty() bool {
	return len(pl.upserts) == 0 && len(pl.resolves) == 0 && len(pl.refresh) == 0 && !pl.recordFiring
}

// failed reports whether a drafted step failed.
func failed(ds []draft) bool {
	return slices.ContainsFunc(ds, func(d draft) bool { return d.err != nil })
}

// stepsOf are a rule's steps in phase.
func stepsOf(rule *rules.Rule, phase vocab.Phase) []*rules.Action {
	switch phase {
	case vocab.PhaseActions:
		return rule.Actions
	case vocab.PhaseEscalate:
		return rule.Escalate
	case vocab.PhaseOnResolved:
		return rule.OnResolved
	}
	return nil
}

// draft renders and builds every step of a rule's phase for alert a at now. A step whose params
// do not render or build fails (bad_param); the steps after it are cancelled.
func (m matcher) draft(rule *rules.Rule, phase vocab.Phase, a alert.Alert, now time.Time, firing rules.FiringSet) []draft {
	return m.appendDrafts(nil, rule, phase, a, now, firing)
}

// appendDrafts is draft appending to ds.
func (m matcher) appendDrafts(ds []draft, rule *rules.Rule, phase vocab.Phase, a alert.Alert, now time.Time, firing rules.FiringSet) []draft {
	steps := stepsOf(rule, phase)
	if len(steps) == 0 {
		return ds
	}
	env := rules.NewEnv(a, now, firing)
	ds = slices.Grow(ds, len(steps))
	broken := false
	for i, s := range steps {
		ds = append(ds, draft{})
		d := &ds[len(ds)-1]
		d.na = newAction(rule, phase, i, s.Handler)
		if broken {
			d.na.State, d.na.Reason = vocab.StateSkipped, vocab.ReasonCancelled
			continue
		}
		d.act, d.key, d.err = m.buildStep(&d.na, steps, s, env)
		if d.err != nil {
			d.act = nil
			d.na.State, d.na.Reason, d.na.Error = vocab.StateFailed, vocab.ReasonBadParam, d.err.Error()
			broken = true
		}
	}
	return ds
}

// newAction fills what every planned action has, before rendering; placing it stamps it.
func newAction(rule *rules.Rule, phase vocab.Phase, step int, handler string) store.NewAction {
	mode := rule.Mode
	if mode == "" {
		mode = vocab.ModeEnforce
	}
	return store.NewAction{Phase: phase, Step: step, Rule: rule.Name, RuleHash: rule.FileHash,
		Handler: handler, Mode: mode, State: vocab.StatePlanned, Params: map[string]any{}}
}

// buildStep is build for a step of steps; a chained step (rules.Action.Deferred) is built with
// stand-ins for the results it reads and stored with its deferred params as written (chain.go).
func (m matcher) buildStep(na *store.NewAction, steps []*rules.Action, s *rules.Action, env *rules.Env) (handlers.Action, string, error) {
	if len(s.Deferred()) == 0 {
		return m.build(na, s, env)
	}
	act, key, err := m.build(na, s, env.WithSteps(m.standIns(steps, s)))
	if err != nil {
		return nil, "", fmt.Errorf("%w (%s)", err, chainNote(s))
	}
	na.Chain = chainOf(s)
	na.Params = withDeferred(na.Params, na.Chain)
	return act, key, nil
}

// build renders the step's params and builds the action once, to learn its class and approval
// (its target, scope and evidence are located when it is placed), and returns the built action
// and the key of its lookups. Execution builds again from the stored params. On error, na keeps
// what was filled before it.
func (m matcher) build(na *store.NewAction, s *rules.Action, env *rules.Env) (handlers.Action, string, error) {
	h, ok := m.handlers.Get(s.Handler)
	if !ok {
		return nil, "", fmt.Errorf("handler %q is not registered", s.Handler)
	}
	spec := m.specs[s.Handler]
	na.Approval = string(cmp.Or(handlers.Approval(s.Approval), spec.DefaultApproval, handlers.ApprovalNone))
	na.Timeout = m.actionTimeout
	if spec.DefaultTimeout > 0 {
		na.Timeout = spec.DefaultTimeout
	}
	if s.Timeout > 0 {
		na.Timeout = s.Timeout
	}
	params, err := s.Render(env)
	if err != nil {
		return nil, "", err
	}
	// Labels are the sender's: bound what one action stores and hands to its handler. The
	// params are not stored (na.Params stays empty); the error says their size.
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, "", fmt.Errorf("params: %w", err)
	}
	if len(raw) > m.maxParamsBytes {
		return nil, "", fmt.Errorf("rendered params are %d bytes, over the limit of %d bytes", len(raw), m.maxParamsBytes)
	}
	na.Params = params
	for _, p := range spec.Params {
		if v, ok := params[p.Name]; ok {
			if err := handlers.CheckType(p, v); err != nil {
				return nil, "", err
			}
		}
	}
	act, err := h.Build(handlers.Params(maps.Clone(params)))
	if err != nil {
		return nil, "", err
	}
	na.Class = classOf(spec, act)
	if na.Approval == string(handlers.ApprovalRequired) {
		na.State = vocab.StateAwaitingApproval
		na.ApprovalsRequired = s.ApprovalsRequired
	}
	return act, s.Handler + "\x00" + string(raw), nil
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

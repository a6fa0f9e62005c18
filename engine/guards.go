package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// The guards of DESIGN.md §2 run as one ordered pipeline, for every action an executor pass
// claims. pipeline is the order, and the only place it is written: the first guard that does not
// let an action pass decides what happens to it, so when two guards would refuse, the earlier one's
// reason is recorded.
//
// A guard judges (check) from what the pass read once for all its claimed actions (readGuards:
// one query per kind of state), from the action and from the calls made to its handler's peer
// (callouts, made with no transaction open: calls says which a guard needs, and they are all made
// before the first guard that needs one runs). A guard that hands out something one at a time (a
// cooldown, a breaker's half-open trial, budget, the execution slot) also claims it (claim), once
// every check passed, in one savepoint that starts the action: the claims run in pipeline order,
// and a refusal takes back the claims before it (so a refusal never spends budget).
//
// Besides the eight guards of DESIGN.md §2 (numbered as there in their docs), three stages stop
// an action: cancelled (its incident resolved or its rule is gone), build (params that no longer
// build: bad_param) and staleness (safety.max_alert_age). The storm guard has two stages: its
// second bound, the share of one workload, needs the built action and the workload's size from the
// handler's peer, so it runs after build. An action that needs approval waits in
// awaiting_approval, which the claim never hands out; once approved it is claimed and runs down
// the whole pipeline again, so the kill switch, the breaker and the budget are checked again just
// before Do.
//
// Dry run and shadow (computed once per action: guardInput.dry) evaluate every guard without
// claiming anything: a guard that would refuse notes why, and the dry-run cut-off records
// dry_run with those notes. The kill switch, the storm guard and the budget refuse only
// disruptive actions; notify actions always run.
var pipeline = []guard{
	{name: "cancelled", check: cancelled},
	{name: "kill switch", check: killSwitch},
	{name: "cooldown", check: cooldown, claim: claimCooldown},
	{name: noteStorm, check: storm},
	{name: noteBreaker, check: breaker, claim: claimTrial},
	{name: "build", check: build},
	{name: "drill page", check: drillPage},
	{name: "storm guard: workload share", check: workloadShare, calls: workloadCalls},
	{name: "staleness", check: staleness, calls: staleCalls},
	{name: noteBudget, check: budget, claim: spendBudget},
	{name: "approval", check: approval},
	{name: "dry run or shadow", check: dryRunCut, calls: dryRunCalls},
	{name: "slot", check: slot, claim: claimSlot},
}

// The notes a dry run records, by the guard that wrote them, in pipeline order.
const (
	noteStorm   = "storm guard"
	noteBreaker = "circuit breaker"
	noteBudget  = "budget"
)

var noteOrder = []string{noteStorm, noteBreaker, noteBudget}

// guard is one stage of the pipeline.
type guard struct {
	name string
	// check judges the action from what the pass read and the callouts' answers.
	check func(ctx context.Context, in *guardInput) verdict
	// calls, when set, says which calls to the handler's peer check needs.
	calls func(ctx context.Context, in *guardInput) peerCalls
	// claim, when set, takes what the guard hands out one at a time, in the savepoint (st) that
	// starts the action, after every check passed.
	claim func(ctx context.Context, in *guardInput, st guardStore) (verdict, error)
}

// verdictKind is what a guard says of an action.
type verdictKind int

const (
	pass   verdictKind = iota // on to the next guard (after the last one: the action starts)
	refuse                    // the action ends here: its outcome (skipped, failed, dry_run) is recorded
	wait                      // the action stays for a later pass: a callout, its target busy, no slot
)

// verdict is what one guard says of an action.
type verdict struct {
	kind   verdictKind
	state  vocab.State // refuse: the action's final state and reason
	reason vocab.Reason
	err    string // refuse: why (the action's error)
	// result and evaluation are a dry run's: what it would have done, what the guards said.
	result, evaluation string
	// callout, on a wait, is the call to the handler's peer the action waits for.
	callout *callout
}

var passed = verdict{kind: pass}

func skipped(reason vocab.Reason, msg string) verdict {
	return verdict{kind: refuse, state: vocab.StateSkipped, reason: reason, err: msg}
}

// peerCalls are the calls to a handler's peer guards need, made outside the transaction (callout).
type peerCalls struct{ size, check bool }

// guardStore is what the guards read and claim, in the executor pass's transaction (txGuards) or,
// in tests, in memory.
type guardStore interface {
	// Read once per pass for every claimed action (readGuards).
	pause(ctx context.Context) (store.PauseState, error)
	cooldowns(ctx context.Context, keys []store.CooldownKey, now time.Time) (map[store.CooldownKey]time.Time, error)
	breakers(ctx context.Context, keys []store.BreakerKey) (map[store.BreakerKey]store.Breaker, error)
	stormyRules(ctx context.Context, rules []string, since time.Time, maxTargets int) (map[string]int, error)
	// Read per action, only where its guard applies: a failed read leaves the pass going.
	workloadMembers(ctx context.Context, rule, target string, since time.Time) (int, error)
	// Read once per pass, by the first action only evaluated that reaches the budget guard, for
	// every claimed action that may (guardReads.budgetUsed): a failed read leaves the pass going.
	budgetsUsed(ctx context.Context, reads []store.BudgetRead, now time.Time) (map[store.BudgetKey]int, error)
	// savepoint runs fn in a savepoint: when fn fails, what it did is taken back.
	savepoint(ctx context.Context, fn func(guardStore) error) error
	// Claimed when the action starts.
	claimCooldown(ctx context.Context, k store.CooldownKey, now, until time.Time) (bool, time.Time, error)
	claimBreakerTrial(ctx context.Context, k store.BreakerKey, openFor time.Duration, now time.Time, actionID int64) (bool, error)
	spendBudget(ctx context.Context, budget, key string, maxSpend int, window time.Duration, now time.Time, actionID int64) (bool, error)
	// startAction marks the action running under owner's lease; false when an action it must wait
	// for runs on its target already (slotKeys; another executor or replica got there first).
	startAction(ctx context.Context, id int64, owner string, now, leaseUntil time.Time) (bool, error)
}

// guardReads is what one pass read for the guards of the actions it claimed.
type guardReads struct {
	paused   bool
	cool     map[store.CooldownKey]time.Time
	breakers map[store.BreakerKey]store.Breaker
	stormy   map[string]int
	budgets  budgetReads
	// drills are the claimed actions of drills, by action id (claimedDrill): read once per pass.
	drills map[int64]drillOf
}

// budgetReads are the budgets' counters the actions of one pass that are only evaluated read (a
// dry run's or shadow's budget verdict).
type budgetReads struct {
	want  []store.BudgetRead      // the counters the claimed actions only evaluated may read (readGuards)
	read  bool                    // want was read
	used  map[store.BudgetKey]int // what was read
	err   error                   // why it could not be
	spent map[store.BudgetKey]int // spent from a counter by the actions this pass started after it was read
}

// budgetUsed is what budget b spent for key: the counters every claimed action only evaluated may
// read are read at once, by the first that does (one statement instead of one per action), and
// what the actions this pass started spent since is added, as a read per action in the pass's
// transaction would have seen it.
func (g *guardReads) budgetUsed(ctx context.Context, st guardStore, b Budget, key string, now time.Time) (int, error) {
	r, k := &g.budgets, store.BudgetKey{Budget: b.Name, Key: key}
	if _, ok := r.used[k]; !ok && r.err == nil {
		reads := []store.BudgetRead{{BudgetKey: k, Window: b.Window}}
		if !r.read {
			reads, r.read = append(r.want, reads...), true
		}
		used, err := st.budgetsUsed(ctx, reads, now)
		if r.used == nil {
			r.used = make(map[store.BudgetKey]int, len(reads))
		}
		for _, rd := range reads { // a counter that spent nothing has no row
			r.used[rd.BudgetKey] = used[rd.BudgetKey]
		}
		r.err = err
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.used[k] + r.spent[k], nil
}

// started counts what an action this pass started spent from the counters already read.
func (g *guardReads) started(o *Options, c store.Claimed) {
	if c.Class != vocab.ClassDisruptive {
		return
	}
	r := &g.budgets
	for _, b := range o.budgetsOf(g.drills[c.ID]) {
		k := store.BudgetKey{Budget: b.Name, Key: b.key(c.Scope)}
		if _, ok := r.used[k]; ok && b.matches(c.Handler) {
			if r.spent == nil {
				r.spent = map[store.BudgetKey]int{}
			}
			r.spent[k]++
		}
	}
}

// budgetWant lists the budget counters the claimed actions only evaluated (dry run, shadow) may
// read: those of the budgets that match their handlers, for their scopes.
func budgetWant(o *Options, claimed []store.Claimed, drills map[int64]drillOf) []store.BudgetRead {
	var want []store.BudgetRead
	seen := map[store.BudgetKey]bool{}
	for _, c := range claimed {
		if c.Class != vocab.ClassDisruptive || dryMode(o, c) == "" {
			continue
		}
		for _, b := range o.budgetsOf(drills[c.ID]) {
			k := store.BudgetKey{Budget: b.Name, Key: b.key(c.Scope)}
			if b.matches(c.Handler) && !seen[k] {
				seen[k] = true
				want = append(want, store.BudgetRead{BudgetKey: k, Window: b.Window})
			}
		}
	}
	return want
}

// readGuards reads the cooldowns, breakers and storm state of the claimed actions, one query each,
// notes which are drills' (from their alerts, as stored), and lists the budget counters the
// actions only evaluated may read (read when one does).
func readGuards(ctx context.Context, st guardStore, o *Options, claimed []store.Claimed, now time.Time, g *guardReads) error {
	g.drills = claimedDrills(claimed)
	g.budgets = budgetReads{want: budgetWant(o, claimed, g.drills)}
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
	if g.cool, err = st.cooldowns(ctx, keys, now); err != nil {
		return err
	}
	if g.breakers, err = st.breakers(ctx, bkeys); err != nil {
		return err
	}
	if o.StormMaxTargets > 0 {
		g.stormy, err = st.stormyRules(ctx, rs, now.Add(-o.StormWindow), o.StormMaxTargets)
	}
	return err
}

// guardInput is one claimed action on its way down the pipeline.
type guardInput struct {
	c    store.Claimed
	now  time.Time
	o    *Options
	log  *slog.Logger
	rule *rules.Rule // nil: the rule is gone
	read *guardReads
	st   guardStore
	// drill is the action's drill (guardReads.drills): its budget and its pages differ (drill.go).
	drill drillOf
	// dry is dry_run or shadow when the action is only evaluated, never run (Options.DryRun, the
	// rule's mode); "" when it is enforced. Computed once, when the action enters the pipeline.
	dry vocab.Reason
	// co holds the calls to the handler's peer made for the action (its second transaction), or nil.
	co *callout
	// build builds the action from its stored params.
	build func(store.Claimed) (handlers.Action, error)
	slots *slots
	// rendered are the params a chained step rendered when it was built (chain.go), recorded when
	// it starts; nil for any other action.
	rendered map[string]any

	// What the guards found on the way.
	act     handlers.Action   // built by the build stage
	members int               // members of the target workload its rule acted on (-1: not counted)
	peered  bool              // the calls later guards need are in co
	trial   bool              // it runs as its breaker's half-open trial
	drillTo string            // the channel a drill's page.slack was redirected to (drillPage)
	notes   map[string]string // what the guards would have refused, by guard name (noteStorm...)
}

// dryMode is what an action is when not enforced: dry_run (Options.DryRun) or shadow (its rule's
// mode), or "" when it is enforced.
func dryMode(o *Options, c store.Claimed) vocab.Reason {
	switch {
	case o.DryRun:
		return vocab.ReasonDryRun
	case c.Mode == vocab.ModeShadow:
		return vocab.ReasonShadow
	}
	return ""
}

// cut refuses the action as skipped with reason, or, when it is only evaluated, notes msg under
// the guard's name for its dry_run record and lets it go on. A guard that cuts twice (the storm
// guard's two bounds) refuses, or notes, both messages.
func (in *guardInput) cut(guard string, reason vocab.Reason, msg string) verdict {
	if prev := in.notes[guard]; prev != "" {
		msg = prev + "; " + msg
	}
	if in.notes == nil {
		in.notes = map[string]string{}
	}
	in.notes[guard] = msg
	if in.dry != "" {
		return passed
	}
	return skipped(reason, msg)
}

// checkErr is what the handler's Check said (nil when it was not asked).
func (in *guardInput) checkErr() error {
	if in.co == nil {
		return nil
	}
	return in.co.checkErr
}

// runGuards runs in down the pipeline: the first guard that does not pass decides. The calls to
// the handler's peer are made once for all the guards: before the first one that needs a call
// runs, every later guard says which it needs, and the action waits for a callout unless in.co
// holds them all.
func runGuards(ctx context.Context, in *guardInput) verdict {
	for i, g := range pipeline {
		if g.calls != nil && !in.peered {
			var need peerCalls
			for _, h := range pipeline[i:] {
				if h.calls != nil {
					n := h.calls(ctx, in)
					need.size, need.check = need.size || n.size, need.check || n.check
				}
			}
			if need.check && !need.size && in.co == nil {
				in.co = checkedLocally(in.c, in.act)
			}
			if co := needCallout(in.c, in.act, in.co, need.size, need.check); co != nil {
				co.rendered = in.rendered
				return verdict{kind: wait, callout: co}
			}
			in.peered = true
		}
		if v := g.check(ctx, in); v.kind != pass {
			return v
		}
	}
	return passed
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

// checkedLocally is the callout of an action whose Check calls nobody (handlers.NotCheckable):
// its answer is known without making the call, so the action needs no callout. nil otherwise.
func checkedLocally(c store.Claimed, act handlers.Action) *callout {
	if _, ok := act.(handlers.NotCheckable); !ok {
		return nil
	}
	return &callout{c: c, act: act, check: true, checkErr: handlers.ErrNotCheckable, done: true}
}

// errNotStarted rolls back the savepoint of an action a claim refused or made wait.
var errNotStarted = errors.New("not started: a guard's claim refused or made it wait")

// claimGuards runs the claims of the guards, in pipeline order, in one savepoint of st that
// starts the action (the slot's claim, last). When a claim refuses or makes the action wait, the
// savepoint takes back the claims before it and the verdict says why; an error rolls back the
// savepoint alone.
func claimGuards(ctx context.Context, in *guardInput, st guardStore) (verdict, error) {
	v := passed
	err := st.savepoint(ctx, func(sp guardStore) error {
		for _, g := range pipeline {
			if g.claim == nil {
				continue
			}
			var err error
			if v, err = g.claim(ctx, in, sp); err != nil {
				return err
			}
			if v.kind != pass {
				return errNotStarted
			}
		}
		return nil
	})
	if errors.Is(err, errNotStarted) {
		return v, nil
	}
	return v, err
}

// cancelled: an action whose incident resolved (except the resolution's own steps) or whose rule
// is gone is not run.
func cancelled(_ context.Context, in *guardInput) verdict {
	c := in.c
	switch {
	case c.IncidentState == vocab.IncidentResolved && c.Phase != vocab.PhaseOnResolved && c.Phase != vocab.PhaseResolve:
		return skipped(vocab.ReasonCancelled, "the incident resolved")
	case in.rule == nil:
		return skipped(vocab.ReasonCancelled, "the rule no longer exists")
	}
	return passed
}

// killSwitch (guard 1): while paused (safety.paused or the pause row, read in the claiming
// transaction), disruptive actions are skipped; notify actions still run.
func killSwitch(_ context.Context, in *guardInput) verdict {
	if in.read.paused && in.c.Class == vocab.ClassDisruptive {
		return skipped(vocab.ReasonPaused, "responder is paused")
	}
	return passed
}

// cooldowns applies to the first attempt of an action of the actions phase: a retry (a page the
// pager did not take) is never blocked by its own first attempt's cooldown.
func cooldowns(c store.Claimed) bool { return c.Phase == vocab.PhaseActions && c.Attempt == 0 }

// cooldown (guard 2): a cooldown of the rule on the target, read by the pass, skips the action.
func cooldown(_ context.Context, in *guardInput) verdict {
	c := in.c
	if until, ok := in.read.cool[store.CooldownKey{Rule: c.Rule, Target: c.Target}]; ok && cooldowns(c) {
		return skipped(vocab.ReasonCooldown, "cooldown until "+until.UTC().Format(time.RFC3339))
	}
	return passed
}

// claimCooldown starts the rule's cooldown on the target, claimed, not only read: another replica
// or an earlier action of this pass may have started it since the pass read the cooldowns.
func claimCooldown(ctx context.Context, in *guardInput, st guardStore) (verdict, error) {
	c := in.c
	if in.rule == nil || in.rule.Cooldown <= 0 || !cooldowns(c) {
		return passed, nil
	}
	ok, until, err := st.claimCooldown(ctx, store.CooldownKey{Rule: c.Rule, Target: c.Target}, in.now, in.now.Add(in.rule.Cooldown))
	if err != nil || ok {
		return passed, err
	}
	msg := "cooldown started meanwhile by another action on the target"
	if !until.IsZero() {
		msg = "cooldown until " + until.UTC().Format(time.RFC3339)
	}
	return skipped(vocab.ReasonCooldown, msg), nil
}

// storm (guard 3, first bound): a disruptive action on an empty or wildcard target is never run
// (not even evaluated), and a rule whose actions touch more than storm_guard.max_targets
// targets within the window acts on none of them.
func storm(_ context.Context, in *guardInput) verdict {
	c := in.c
	if c.Class != vocab.ClassDisruptive {
		return passed
	}
	if t := strings.TrimSpace(c.Target); t == "" || strings.Contains(t, "*") {
		return skipped(vocab.ReasonStorm, "empty or wildcard target "+strconv.Quote(c.Target))
	}
	if n, ok := in.read.stormy[c.Rule]; ok && c.Phase == vocab.PhaseActions {
		return in.cut(noteStorm, vocab.ReasonStorm, fmt.Sprintf("rule %s would touch %d targets within %s (safety.storm_guard.max_targets %d)",
			c.Rule, n, in.o.StormWindow, in.o.StormMaxTargets))
	}
	return passed
}

// breaker (guard 4): the circuit breaker of (handler, scope) of a disruptive action. Open refuses;
// once its open period is over, one action (cluster-wide, claimed by claimTrial) runs as the trial.
func breaker(_ context.Context, in *guardInput) verdict {
	c := in.c
	if c.Class != vocab.ClassDisruptive {
		return passed
	}
	b, ok := in.read.breakers[store.BreakerKey{Handler: c.Handler, Scope: c.Scope}]
	switch {
	case !ok:
	case b.State == store.BreakerOpen && b.OpenedAt != nil && in.now.Before(b.OpenedAt.Add(in.o.BreakerOpenFor)):
		return in.cut(noteBreaker, vocab.ReasonBreaker, "breaker open since "+b.OpenedAt.UTC().Format(time.RFC3339))
	case b.State == store.BreakerHalfOpen && b.TrialActionID != nil && *b.TrialActionID != c.ID:
		return in.cut(noteBreaker, vocab.ReasonBreaker, "breaker half-open: another action is its trial")
	case b.State != store.BreakerClosed:
		in.trial = true
	}
	return passed
}

// claimTrial claims the breaker's half-open trial for the action breaker chose.
func claimTrial(ctx context.Context, in *guardInput, st guardStore) (verdict, error) {
	if !in.trial {
		return passed, nil
	}
	ok, err := st.claimBreakerTrial(ctx, store.BreakerKey{Handler: in.c.Handler, Scope: in.c.Scope}, in.o.BreakerOpenFor, in.now, in.c.ID)
	if err != nil || ok {
		return passed, err
	}
	return skipped(vocab.ReasonBreaker, "another action is the breaker's half-open trial"), nil
}

// build builds the action from its stored params (or takes the one its callout built): an action
// that does not build fails with reason bad_param.
func build(_ context.Context, in *guardInput) verdict {
	if in.co != nil {
		in.act, in.rendered = in.co.act, in.co.rendered
		return passed
	}
	act, err := in.build(in.c)
	if notRun, ok := errors.AsType[*stepNotRun](err); ok {
		return chainVerdict(in, notRun)
	}
	if err != nil {
		return verdict{kind: refuse, state: vocab.StateFailed, reason: vocab.ReasonBadParam, err: err.Error()}
	}
	in.act = act
	return passed
}

// workloadCalls counts the members of the action's target workload its rule acted on within the
// storm window (when storm_guard.max_workload_fraction applies: a disruptive action of the actions
// phase on a handlers.WorkloadMember), and asks the workload's size when more than one was.
func workloadCalls(ctx context.Context, in *guardInput) peerCalls {
	c := in.c
	in.members = 0
	if _, ok := in.act.(handlers.WorkloadMember); !ok || in.o.StormMaxWorkloadFraction <= 0 ||
		c.Class != vocab.ClassDisruptive || c.Phase != vocab.PhaseActions {
		return peerCalls{}
	}
	n, err := in.st.workloadMembers(ctx, c.Rule, c.Target, in.now.Add(-in.o.StormWindow))
	if err != nil {
		in.log.Warn("storm guard: could not count the workload's members; the guard refuses", "action_id", c.ID, "err", err)
		n = -1
	}
	in.members = n
	return peerCalls{size: n > 1}
}

// workloadShare (guard 3, second bound): a rule's actions within the storm window may touch at
// most storm_guard.max_workload_fraction of the target workload's members (at least one member is
// always allowed: the handlers' own floors, such as min_healthy, protect small workloads). A
// workload whose size or members cannot be read is refused too: the guard fails closed.
func workloadShare(_ context.Context, in *guardInput) verdict {
	c, n := in.c, in.members
	switch {
	case n == 0 || n == 1:
		return passed
	case n < 0:
		return in.cut(noteStorm, vocab.ReasonStorm, "the members of workload "+c.Target+" acted on could not be counted: the storm guard refuses")
	case in.co.sizeErr != nil:
		return in.cut(noteStorm, vocab.ReasonStorm, fmt.Sprintf("the size of workload %s is unknown (%v): the storm guard refuses", c.Target, in.co.sizeErr))
	}
	allowed := max(1, int(in.o.StormMaxWorkloadFraction*float64(in.co.sizeN)))
	if n > allowed {
		return in.cut(noteStorm, vocab.ReasonStorm, fmt.Sprintf("rule %s would touch %d of the %d members of %s within %s (safety.storm_guard.max_workload_fraction %g allows %d)",
			c.Rule, n, in.co.sizeN, c.Target, in.o.StormWindow, in.o.StormMaxWorkloadFraction, allowed))
	}
	return passed
}

// stale reports whether an action's evidence is older than safety.max_alert_age. A notification
// already tried once (the pager was down) is delivered late rather than never.
func (in *guardInput) stale() bool {
	c := in.c
	retrying := c.Class == vocab.ClassNotify && c.Attempt > 0
	return in.o.MaxAlertAge > 0 && in.now.Sub(c.EvidenceAt) > in.o.MaxAlertAge && !retrying
}

func staleCalls(_ context.Context, in *guardInput) peerCalls { return peerCalls{check: in.stale()} }

// staleness: an action whose evidence is older than safety.max_alert_age runs only when the
// handler's Check re-confirms the condition.
func staleness(_ context.Context, in *guardInput) verdict {
	if err := in.checkErr(); in.stale() && err != nil {
		return skipped(vocab.ReasonStale, "evidence from "+in.c.EvidenceAt.UTC().Format(time.RFC3339)+" is older than safety.max_alert_age; "+err.Error())
	}
	return passed
}

// budget (guard 5) is spent by spendBudget, last of the claims so that a refusal never spends. An
// action only evaluated notes which budget would refuse it (read, nothing spent).
func budget(ctx context.Context, in *guardInput) verdict {
	c := in.c
	if in.dry == "" || c.Class != vocab.ClassDisruptive {
		return passed
	}
	for _, b := range in.o.budgetsOf(in.drill) {
		if !b.matches(c.Handler) {
			continue
		}
		used, err := in.read.budgetUsed(ctx, in.st, b, b.key(c.Scope), in.now)
		switch {
		case err != nil:
			// Said, not taken for "the budget would allow": spending it, the pass would fail
			// and be retried.
			return in.cut(noteBudget, vocab.ReasonBudget, "budget "+b.Name+" could not be read ("+err.Error()+"): the live guard would retry the pass")
		case used >= b.Max:
			return in.cut(noteBudget, vocab.ReasonBudget, "budget "+b.Name+" exhausted")
		}
	}
	return passed
}

// spendBudget spends one unit of every budget that matches a disruptive action (a drill's: the
// drills budget only, budgetsOf).
func spendBudget(ctx context.Context, in *guardInput, st guardStore) (verdict, error) {
	c := in.c
	if c.Class != vocab.ClassDisruptive {
		return passed, nil
	}
	for _, b := range in.o.budgetsOf(in.drill) {
		if !b.matches(c.Handler) {
			continue
		}
		ok, err := st.spendBudget(ctx, b.Name, b.key(c.Scope), b.Max, b.Window, in.now, c.ID)
		if err != nil {
			return passed, err
		}
		if !ok {
			return skipped(vocab.ReasonBudget, fmt.Sprintf("budget %s: %d %s actions per %s already spent for %q", b.Name, b.Max, b.Match, b.Window, b.key(c.Scope))), nil
		}
	}
	return passed, nil
}

// approval (guard 6): an action that needs approval waits in awaiting_approval until enough
// approvers decided (Engine.Decide; the executor expires it after approvals.ttl). The claim
// (store.ClaimRunnableTx) hands out only planned and approved actions; this stage holds one
// awaiting approval that reaches the pipeline anyway.
func approval(_ context.Context, in *guardInput) verdict {
	if in.c.State == vocab.StateAwaitingApproval {
		return verdict{kind: wait}
	}
	return passed
}

func dryRunCalls(_ context.Context, in *guardInput) peerCalls { return peerCalls{check: in.dry != ""} }

// dryRunCut (guard 7): an action only evaluated (dry run or shadow) ends here, recorded dry_run
// with what its handler's Check and every guard said; it never runs.
func dryRunCut(_ context.Context, in *guardInput) verdict {
	if in.dry == "" {
		return passed
	}
	eval := "check: ok"
	if err := in.checkErr(); err != nil {
		eval = "check: " + err.Error()
	}
	for _, g := range noteOrder {
		if n := in.notes[g]; n != "" {
			eval += "; " + n
		}
	}
	target := in.c.Target
	if in.drillTo != "" {
		target += " (drill: to " + in.drillTo + ", drills.page)"
	}
	return verdict{kind: refuse, state: vocab.StateDryRun, reason: in.dry, evaluation: eval,
		result: "would run " + in.c.Handler + " on " + target + " (" + eval + ")"}
}

// slot (guard 8): an action runs only in an execution slot of this replica
// (safety.max_concurrent_actions), and a disruptive action one at a time per target (slotKeys:
// notify actions of many incidents to one target, a pager's URL, run side by side); without one it
// waits for a later pass. Execution slots never refuse.
func slot(_ context.Context, in *guardInput) verdict {
	if !in.slots.take(slotKeys(in.c)...) {
		return verdict{kind: wait}
	}
	return passed
}

// claimSlot starts the action: running, under this replica's lease. When an action it must wait
// for runs already on its target (another executor or replica started it meanwhile), it waits.
func claimSlot(ctx context.Context, in *guardInput, st guardStore) (verdict, error) {
	ok, err := st.startAction(ctx, in.c.ID, in.o.Owner, in.now, in.now.Add(in.o.Lease))
	if err != nil || ok {
		return passed, err
	}
	return verdict{kind: wait}, nil
}

// slotKeys are what an action holds while it runs, one at a time, as the store's claim and
// indexes have it: its target within its incident (actions_one_running_per_incident_target: a
// page's resolve waits for its trigger in flight) and, for a disruptive action, its target
// whatever the incident (actions_one_running_per_target). Notify actions of different incidents
// to one target run side by side.
func slotKeys(c store.Claimed) []string {
	keys := []string{"incident " + strconv.FormatInt(c.IncidentID, 10) + " target " + c.Target}
	if c.Class == vocab.ClassDisruptive {
		keys = append(keys, "target "+c.Target)
	}
	return keys
}

// slots are the execution slots an executor pass takes: this replica's (shared by its passes) and
// the keys (slotKeys) of the actions the pass starts. A slot is taken (without blocking) before an
// action is marked running: an action is running in the database only while this replica holds a
// slot for it.
type slots struct {
	pool     chan struct{}
	busy     map[string]bool // slotKeys of the actions this pass started
	reserved int             // slots taken by this pass
}

func newSlots(pool chan struct{}) *slots { return &slots{pool: pool, busy: map[string]bool{}} }

// take takes a slot for an action of keys (slotKeys); false when a key is busy or no slot is free.
func (s *slots) take(keys ...string) bool {
	for _, k := range keys {
		if s.busy[k] {
			return false
		}
	}
	select {
	case s.pool <- struct{}{}:
		s.reserved++
		return true
	default:
		return false
	}
}

// give gives back a slot taken for an action that did not start.
func (s *slots) give() {
	<-s.pool
	s.reserved--
}

// started marks the keys (slotKeys) of an action that started busy for the rest of the pass.
func (s *slots) started(keys ...string) {
	for _, k := range keys {
		s.busy[k] = true
	}
}

// releaseAll gives back every slot this pass took (its transaction did not commit).
func (s *slots) releaseAll() {
	for ; s.reserved > 0; s.reserved-- {
		<-s.pool
	}
}

package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/notify/slack"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// fakeGuards is the guards' store in memory. savepoint takes back what fn changed when fn fails,
// as the real one's savepoint does; calls lists the methods called, in order.
type fakeGuards struct {
	fakeState
	calls []string
}

type fakeState struct {
	pause      store.PauseState
	cool       map[store.CooldownKey]time.Time
	breakers   map[store.BreakerKey]store.Breaker
	stormy     map[string]int
	members    map[string]int // rule/target → members acted on
	membersErr error
	budgetsErr error
	spent      map[string]int // budget/key → units spent
	trials     map[store.BreakerKey]int64
	busy       map[int64]bool // actions whose target runs another action
	started    []int64
}

func newFake() *fakeGuards {
	return &fakeGuards{fakeState: fakeState{cool: map[store.CooldownKey]time.Time{}, breakers: map[store.BreakerKey]store.Breaker{},
		stormy: map[string]int{}, members: map[string]int{}, spent: map[string]int{}, trials: map[store.BreakerKey]int64{},
		busy: map[int64]bool{}}}
}

func (s fakeState) clone() fakeState {
	c := s
	c.cool, c.breakers, c.stormy, c.members = maps.Clone(s.cool), maps.Clone(s.breakers), maps.Clone(s.stormy), maps.Clone(s.members)
	c.spent, c.trials, c.busy, c.started = maps.Clone(s.spent), maps.Clone(s.trials), maps.Clone(s.busy), slices.Clone(s.started)
	return c
}

func (f *fakeGuards) called(m string) { f.calls = append(f.calls, m) }

func (f *fakeGuards) pause(context.Context) (store.PauseState, error) {
	f.called("pause")
	return f.fakeState.pause, nil
}

func (f *fakeGuards) cooldowns(_ context.Context, keys []store.CooldownKey, now time.Time) (map[store.CooldownKey]time.Time, error) {
	f.called("cooldowns")
	out := map[store.CooldownKey]time.Time{}
	for _, k := range keys {
		if u, ok := f.cool[k]; ok && u.After(now) {
			out[k] = u
		}
	}
	return out, nil
}

func (f *fakeGuards) breakers(_ context.Context, keys []store.BreakerKey) (map[store.BreakerKey]store.Breaker, error) {
	f.called("breakers")
	out := map[store.BreakerKey]store.Breaker{}
	for _, k := range keys {
		if b, ok := f.fakeState.breakers[k]; ok {
			out[k] = b
		}
	}
	return out, nil
}

func (f *fakeGuards) stormyRules(_ context.Context, rs []string, _ time.Time, _ int) (map[string]int, error) {
	f.called("stormyRules")
	out := map[string]int{}
	for _, r := range rs {
		if n, ok := f.stormy[r]; ok {
			out[r] = n
		}
	}
	return out, nil
}

func (f *fakeGuards) workloadMembers(_ context.Context, rule, target string, _ time.Time) (int, error) {
	f.called("workloadMembers")
	return f.members[rule+"/"+target], f.membersErr
}

func (f *fakeGuards) budgetsUsed(_ context.Context, reads []store.BudgetRead, _ time.Time) (map[store.BudgetKey]int, error) {
	f.called("budgetsUsed")
	if f.budgetsErr != nil {
		return nil, f.budgetsErr
	}
	out := map[store.BudgetKey]int{}
	for _, r := range reads {
		if n := f.spent[r.Budget+"/"+r.Key]; n > 0 {
			out[r.BudgetKey] = n
		}
	}
	return out, nil
}

func (f *fakeGuards) savepoint(_ context.Context, fn func(guardStore) error) error {
	saved := f.clone()
	if err := fn(f); err != nil {
		f.fakeState = saved
		return err
	}
	return nil
}

func (f *fakeGuards) claimCooldown(_ context.Context, k store.CooldownKey, now, until time.Time) (bool, time.Time, error) {
	f.called("claimCooldown")
	if u, ok := f.cool[k]; ok && u.After(now) {
		return false, u, nil
	}
	f.cool[k] = until
	return true, time.Time{}, nil
}

func (f *fakeGuards) claimBreakerTrial(_ context.Context, k store.BreakerKey, _ time.Duration, _ time.Time, id int64) (bool, error) {
	f.called("claimBreakerTrial")
	if t, ok := f.trials[k]; ok && t != id {
		return false, nil
	}
	f.trials[k] = id
	return true, nil
}

func (f *fakeGuards) spendBudget(_ context.Context, budget, key string, maxSpend int, _ time.Duration, _ time.Time, _ int64) (bool, error) {
	f.called("spendBudget")
	if f.spent[budget+"/"+key] >= maxSpend {
		return false, nil
	}
	f.spent[budget+"/"+key]++
	return true, nil
}

func (f *fakeGuards) startAction(_ context.Context, id int64, _ string, _, _ time.Time) (bool, error) {
	f.called("startAction")
	if f.busy[id] {
		return false, nil
	}
	f.started = append(f.started, id)
	return true, nil
}

var _ guardStore = (*fakeGuards)(nil)

// fakeAction is a built action; a member of a workload when member is set. The guards never call
// its handler's methods (the callouts do): the embedded interface stands for them.
type fakeAction struct {
	handlers.Action
	member string
}

type fakeMember struct{ fakeAction }

func (m fakeMember) Member() string                          { return m.member }
func (fakeMember) WorkloadSize(context.Context) (int, error) { return 0, nil }

var tNow = time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)

// newInput is a disruptive, planned first attempt of rule r's actions on target t1, fresh, with
// every guard clear: it passes.
func newInput(f *fakeGuards) *guardInput {
	c := store.Claimed{Action: store.Action{ID: 7, IncidentID: 1, Phase: vocab.PhaseActions, Rule: "r", Handler: "test.fix",
		Target: "t1", Scope: "s", Class: vocab.ClassDisruptive, Mode: vocab.ModeEnforce, State: vocab.StatePlanned},
		IncidentState: vocab.IncidentFiring, EvidenceAt: tNow}
	o := &Options{Owner: "replica-a", Lease: 30 * time.Second, MaxAlertAge: 15 * time.Minute, StormWindow: 5 * time.Minute,
		StormMaxTargets: 10, StormMaxWorkloadFraction: 0.5, BreakerOpenFor: 5 * time.Minute,
		Budgets:     []Budget{{Name: "b", Match: "test.*", Per: "global", Max: 3, Window: time.Hour}},
		DrillBudget: drillBudgetDefaults(Budget{})}
	return &guardInput{c: c, now: tNow, o: o, log: slog.New(slog.DiscardHandler), rule: &rules.Rule{Name: "r", Cooldown: 15 * time.Minute},
		read: &guardReads{}, st: f, build: func(store.Claimed) (handlers.Action, error) { return fakeAction{}, nil },
		slots: newSlots(make(chan struct{}, 2))}
}

// run sets dry and runs in down the pipeline.
func run(in *guardInput) verdict {
	in.dry = dryMode(in.o, in.c)
	return runGuards(context.Background(), in)
}

// The order is the one DESIGN.md §2 gives (with the stages around it), and the one the package
// doc lists: change all three together.
func TestPipelineOrder(t *testing.T) {
	var got []string
	for _, g := range pipeline {
		got = append(got, g.name)
	}
	want := []string{"cancelled", "kill switch", "cooldown", "storm guard", "circuit breaker", "build", "drill page",
		"storm guard: workload share", "staleness", "budget", "approval", "dry run or shadow", "slot"}
	if !slices.Equal(got, want) {
		t.Fatalf("pipeline = %q\nwant       %q", got, want)
	}
	var claims []string
	for _, g := range pipeline {
		if g.claim != nil {
			claims = append(claims, g.name)
		}
	}
	if want := []string{"cooldown", "circuit breaker", "budget", "slot"}; !slices.Equal(claims, want) {
		t.Fatalf("claims = %q, want %q (budget after the others: a refusal never spends)", claims, want)
	}
	for i, n := range noteOrder {
		if i > 0 && slices.IndexFunc(pipeline, func(g guard) bool { return g.name == n }) <
			slices.IndexFunc(pipeline, func(g guard) bool { return g.name == noteOrder[i-1] }) {
			t.Fatalf("noteOrder %q is not in pipeline order", noteOrder)
		}
	}
}

func TestGuards(t *testing.T) {
	checkFails := &callout{size: true, check: true, checkErr: errors.New("condition gone")}
	checkOK := &callout{size: true, check: true, sizeN: 10}
	for _, tc := range []struct {
		name  string
		setup func(in *guardInput, f *fakeGuards)
		kind  verdictKind
		state vocab.State
		// reason, and a part of the error (refuse) or of the dry run's evaluation
		reason vocab.Reason
		text   string
	}{
		{name: "all clear", kind: pass},
		{name: "incident resolved", setup: func(in *guardInput, _ *fakeGuards) { in.c.IncidentState = vocab.IncidentResolved },
			kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonCancelled, text: "the incident resolved"},
		{name: "on_resolved runs after the resolution", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.IncidentState, in.c.Phase = vocab.IncidentResolved, vocab.PhaseOnResolved
		}, kind: pass},
		{name: "rule gone", setup: func(in *guardInput, _ *fakeGuards) { in.rule = nil },
			kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonCancelled, text: "the rule no longer exists"},
		{name: "paused", setup: func(in *guardInput, _ *fakeGuards) { in.read.paused = true },
			kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonPaused},
		{name: "paused, notify runs", setup: func(in *guardInput, _ *fakeGuards) {
			in.read.paused, in.c.Class = true, vocab.ClassNotify
		}, kind: pass},
		{name: "cooldown", setup: func(in *guardInput, _ *fakeGuards) {
			in.read.cool = map[store.CooldownKey]time.Time{{Rule: "r", Target: "t1"}: tNow.Add(time.Minute)}
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonCooldown, text: "cooldown until 2026-11-22T03:01:00Z"},
		{name: "a retry ignores its own cooldown", setup: func(in *guardInput, _ *fakeGuards) {
			in.read.cool = map[store.CooldownKey]time.Time{{Rule: "r", Target: "t1"}: tNow.Add(time.Minute)}
			in.c.Attempt, in.c.Class = 1, vocab.ClassNotify
		}, kind: pass},
		{name: "wildcard target, even in a dry run", setup: func(in *guardInput, _ *fakeGuards) { in.c.Target, in.o.DryRun = "ns/*", true },
			kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonStorm, text: `empty or wildcard target "ns/*"`},
		{name: "storm", setup: func(in *guardInput, _ *fakeGuards) { in.read.stormy = map[string]int{"r": 12} },
			kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonStorm, text: "rule r would touch 12 targets within 5m0s"},
		{name: "storm in shadow: noted", setup: func(in *guardInput, _ *fakeGuards) {
			in.read.stormy, in.c.Mode, in.co = map[string]int{"r": 12}, vocab.ModeShadow, checkOK
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonShadow, text: "check: ok; rule r would touch 12 targets"},
		{name: "breaker open", setup: func(in *guardInput, _ *fakeGuards) {
			at := tNow.Add(-time.Minute)
			in.read.breakers = map[store.BreakerKey]store.Breaker{{Handler: "test.fix", Scope: "s"}: {State: store.BreakerOpen, OpenedAt: &at}}
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonBreaker, text: "breaker open since 2026-11-22T02:59:00Z"},
		{name: "breaker half-open, another trial", setup: func(in *guardInput, _ *fakeGuards) {
			other := int64(99)
			in.read.breakers = map[store.BreakerKey]store.Breaker{{Handler: "test.fix", Scope: "s"}: {State: store.BreakerHalfOpen, TrialActionID: &other}}
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonBreaker, text: "another action is its trial"},
		{name: "bad params", setup: func(in *guardInput, _ *fakeGuards) {
			in.build = func(store.Claimed) (handlers.Action, error) { return nil, errors.New("target is empty") }
		}, kind: refuse, state: vocab.StateFailed, reason: vocab.ReasonBadParam, text: "target is empty"},
		{name: "workload share: the size is asked", setup: func(in *guardInput, f *fakeGuards) {
			in.build = func(store.Claimed) (handlers.Action, error) { return fakeMember{fakeAction{member: "p"}}, nil }
			f.members["r/t1"] = 3
		}, kind: wait},
		{name: "workload share over the fraction", setup: func(in *guardInput, f *fakeGuards) {
			f.members["r/t1"] = 3
			in.co = &callout{act: fakeMember{fakeAction{member: "p"}}, size: true, sizeN: 4}
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonStorm, text: "would touch 3 of the 4 members of t1"},
		{name: "workload share within the fraction", setup: func(in *guardInput, f *fakeGuards) {
			f.members["r/t1"] = 3
			in.co = &callout{act: fakeMember{fakeAction{member: "p"}}, size: true, sizeN: 6}
		}, kind: pass},
		{name: "workload members not counted: fails closed", setup: func(in *guardInput, f *fakeGuards) {
			in.build = func(store.Claimed) (handlers.Action, error) { return fakeMember{fakeAction{member: "p"}}, nil }
			f.membersErr = errors.New("database hiccup")
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonStorm, text: "could not be counted"},
		{name: "stale: Check is asked", setup: func(in *guardInput, _ *fakeGuards) { in.c.EvidenceAt = tNow.Add(-time.Hour) },
			kind: wait},
		{name: "stale, Check says the condition is gone", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.EvidenceAt, in.co = tNow.Add(-time.Hour), checkFails
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonStale, text: "older than safety.max_alert_age; condition gone"},
		{name: "stale, re-confirmed", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.EvidenceAt, in.co = tNow.Add(-time.Hour), checkOK
		}, kind: pass},
		{name: "a notification retried is late, not stale", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.EvidenceAt, in.c.Class, in.c.Attempt = tNow.Add(-time.Hour), vocab.ClassNotify, 2
		}, kind: pass},
		{name: "awaiting approval waits", setup: func(in *guardInput, _ *fakeGuards) { in.c.State = vocab.StateAwaitingApproval },
			kind: wait},
		{name: "dry run: Check is asked", setup: func(in *guardInput, _ *fakeGuards) { in.o.DryRun = true }, kind: wait},
		{name: "dry run with every note", setup: func(in *guardInput, f *fakeGuards) {
			at := tNow.Add(-time.Minute)
			in.o.DryRun, in.co = true, checkFails
			in.read.stormy = map[string]int{"r": 12}
			in.read.breakers = map[store.BreakerKey]store.Breaker{{Handler: "test.fix", Scope: "s"}: {State: store.BreakerOpen, OpenedAt: &at}}
			f.spent["b/"] = 3
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDryRun,
			text: "check: condition gone; rule r would touch 12 targets within 5m0s (safety.storm_guard.max_targets 10); " +
				"breaker open since 2026-11-22T02:59:00Z; budget b exhausted"},
		{name: "dry run, budget not read: noted, not taken for room", setup: func(in *guardInput, f *fakeGuards) {
			in.o.DryRun, in.co = true, checkOK
			f.budgetsErr = errors.New("database hiccup")
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDryRun,
			text: "budget b could not be read (database hiccup): the live guard would retry the pass"},
		{name: "drill: a notify action is not sent", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.Class, in.c.Handler, in.c.Target, in.drill = vocab.ClassNotify, "page.webhook", "pager", drillOf{run: "d-1"}
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDrill, text: "drill: page.webhook to pager not sent (drills.page)"},
		{name: "drill: page.slack without drills.page is not sent", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.Class, in.c.Handler, in.c.Target, in.drill = vocab.ClassNotify, slackPage, "slack:#oncall incident/1", drillOf{run: "d-1"}
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDrill, text: "drill: page.slack to slack:#oncall incident/1 not sent"},
		{name: "drill: in a dry run, a notify action says drill", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.Class, in.c.Handler, in.drill, in.o.DryRun = vocab.ClassNotify, "page.webhook", drillOf{run: "d-1"}, true
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDrill, text: "not sent"},
		{name: "drill paging for real: sent", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.Class, in.c.Handler, in.drill = vocab.ClassNotify, "page.webhook", drillOf{run: "d-1", pageReal: true}
		}, kind: pass},
		{name: "drill: a disruptive action runs", setup: func(in *guardInput, _ *fakeGuards) { in.drill = drillOf{run: "d-1"} }, kind: pass},
		{name: "drill: paused skips its disruptive action", setup: func(in *guardInput, _ *fakeGuards) {
			in.drill, in.read.paused = drillOf{run: "d-1"}, true
		}, kind: refuse, state: vocab.StateSkipped, reason: vocab.ReasonPaused},
		{name: "drill: a production budget spent does not hold it back", setup: func(in *guardInput, f *fakeGuards) {
			in.drill, in.o.DryRun, in.co = drillOf{run: "d-1"}, true, checkOK
			f.spent["b/"] = 3
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDryRun, text: "check: ok"},
		{name: "drill: the drills budget spent is noted in a dry run", setup: func(in *guardInput, f *fakeGuards) {
			in.drill, in.o.DryRun, in.co = drillOf{run: "d-1"}, true, checkOK
			f.spent["drills/"] = 10
		}, kind: refuse, state: vocab.StateDryRun, reason: vocab.ReasonDryRun, text: "check: ok; budget drills exhausted"},
		{name: "no free slot waits", setup: func(in *guardInput, _ *fakeGuards) { in.slots = newSlots(make(chan struct{})) }, kind: wait},
		{name: "a target busy with another incident's disruptive action waits", setup: func(in *guardInput, _ *fakeGuards) {
			other := in.c
			other.IncidentID++
			in.slots.started(slotKeys(other)...)
		}, kind: wait},
		{name: "notify: a target busy with another incident's action does not wait", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.Class = vocab.ClassNotify
			other := in.c
			other.IncidentID++
			in.slots.started(slotKeys(other)...)
		}, kind: pass},
		{name: "notify: a target busy in its incident waits", setup: func(in *guardInput, _ *fakeGuards) {
			in.c.Class = vocab.ClassNotify
			in.slots.started(slotKeys(in.c)...)
		}, kind: wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			in := newInput(f)
			if tc.setup != nil {
				tc.setup(in, f)
			}
			v := run(in)
			if v.kind != tc.kind || v.state != tc.state || v.reason != tc.reason {
				t.Fatalf("verdict %+v, want kind %d %s/%s", v, tc.kind, tc.state, tc.reason)
			}
			text := v.err
			switch {
			case v.reason == vocab.ReasonDrill:
				text = v.result
			case v.state == vocab.StateDryRun:
				text = v.evaluation
				if !strings.HasPrefix(v.result, "would run test.fix on ") {
					t.Errorf("dry run result %q", v.result)
				}
			}
			if !strings.Contains(text, tc.text) {
				t.Errorf("text %q, want it to hold %q", text, tc.text)
			}
			if tc.kind == pass && in.slots.reserved != 1 {
				t.Errorf("an action that passed holds %d slots, want 1", in.slots.reserved)
			}
		})
	}
}

// refusals are the ways to make each guard refuse, in pipeline order, with the reason it records.
var refusals = []struct {
	guard  string
	reason vocab.Reason
	setup  func(in *guardInput, f *fakeGuards)
}{
	{"cancelled", vocab.ReasonCancelled, func(in *guardInput, _ *fakeGuards) { in.c.IncidentState = vocab.IncidentResolved }},
	{"kill switch", vocab.ReasonPaused, func(in *guardInput, _ *fakeGuards) { in.read.paused = true }},
	{"cooldown", vocab.ReasonCooldown, func(in *guardInput, _ *fakeGuards) {
		in.read.cool = map[store.CooldownKey]time.Time{{Rule: "r", Target: "t1"}: tNow.Add(time.Minute)}
	}},
	{"storm guard", vocab.ReasonStorm, func(in *guardInput, _ *fakeGuards) { in.read.stormy = map[string]int{"r": 12} }},
	{"circuit breaker", vocab.ReasonBreaker, func(in *guardInput, _ *fakeGuards) {
		at := tNow.Add(-time.Minute)
		in.read.breakers = map[store.BreakerKey]store.Breaker{{Handler: "test.fix", Scope: "s"}: {State: store.BreakerOpen, OpenedAt: &at}}
	}},
	{"build", vocab.ReasonBadParam, func(in *guardInput, _ *fakeGuards) {
		in.build = func(store.Claimed) (handlers.Action, error) { return nil, errors.New("bad") }
	}},
	{"storm guard: workload share", vocab.ReasonStorm, func(in *guardInput, f *fakeGuards) {
		f.members["r/t1"] = 3
		in.co.sizeN = 4
	}},
	{"staleness", vocab.ReasonStale, func(in *guardInput, _ *fakeGuards) {
		in.c.EvidenceAt, in.co.checkErr = tNow.Add(-time.Hour), errors.New("gone")
	}},
}

// When two guards would refuse, the earlier one in the pipeline decides.
func TestPrecedence(t *testing.T) {
	for i, a := range refusals {
		for _, b := range refusals[i:] {
			t.Run(a.guard+" before "+b.guard, func(t *testing.T) {
				f := newFake()
				in := newInput(f)
				// The calls made for it (the build stage takes the action from them), unless the
				// build is what refuses: then there is nothing to call.
				in.co = &callout{act: fakeMember{fakeAction{member: "p"}}, size: true, check: true, sizeN: 100}
				a.setup(in, f)
				b.setup(in, f)
				if a.guard == "build" || b.guard == "build" {
					in.co = nil
				}
				if v := run(in); v.kind != refuse || v.reason != a.reason {
					t.Fatalf("verdict %+v, want %s (%s)", v, a.reason, a.guard)
				}
			})
		}
	}
}

// Dry run or shadow is decided once, from the options and the rule's mode.
func TestDryMode(t *testing.T) {
	for _, tc := range []struct {
		dry  bool
		mode vocab.Mode
		want vocab.Reason
	}{
		{false, vocab.ModeEnforce, ""},
		{false, vocab.ModeShadow, vocab.ReasonShadow},
		{true, vocab.ModeEnforce, vocab.ReasonDryRun},
		{true, vocab.ModeShadow, vocab.ReasonDryRun},
	} {
		if got := dryMode(&Options{DryRun: tc.dry}, store.Claimed{Action: store.Action{Mode: tc.mode}}); got != tc.want {
			t.Errorf("dry %v mode %s: %q, want %q", tc.dry, tc.mode, got, tc.want)
		}
	}
}

// One callout serves every guard that needs the handler's peer: the workload's size and Check are
// asked together, and with both answered the action goes on.
func TestOneCalloutForAllGuards(t *testing.T) {
	f := newFake()
	in := newInput(f)
	in.build = func(store.Claimed) (handlers.Action, error) { return fakeMember{fakeAction{member: "p"}}, nil }
	in.c.EvidenceAt = tNow.Add(-time.Hour)
	f.members["r/t1"] = 2
	v := run(in)
	if v.kind != wait || v.callout == nil || !v.callout.size || !v.callout.check {
		t.Fatalf("verdict %+v, want a wait for one callout asking the size and Check", v)
	}
	co := v.callout
	co.sizeN = 10
	in = newInput(f)
	in.c.EvidenceAt, in.co = tNow.Add(-time.Hour), co
	if v := run(in); v.kind != pass {
		t.Fatalf("with the callout made: %+v, want pass", v)
	}
}

func TestClaims(t *testing.T) {
	trialInput := func(f *fakeGuards) *guardInput {
		in := newInput(f)
		in.read.breakers = map[store.BreakerKey]store.Breaker{{Handler: "test.fix", Scope: "s"}: {State: store.BreakerOpen}}
		return in
	}
	for _, tc := range []struct {
		name   string
		setup  func(f *fakeGuards)
		in     func(f *fakeGuards) *guardInput
		kind   verdictKind
		reason vocab.Reason
		calls  []string
	}{
		{name: "all claimed, in pipeline order", in: trialInput, kind: pass,
			calls: []string{"claimCooldown", "claimBreakerTrial", "spendBudget", "startAction"}},
		{name: "cooldown started meanwhile", setup: func(f *fakeGuards) { f.cool[store.CooldownKey{Rule: "r", Target: "t1"}] = tNow.Add(time.Minute) },
			in: trialInput, kind: refuse, reason: vocab.ReasonCooldown, calls: []string{"claimCooldown"}},
		{name: "trial taken by another", setup: func(f *fakeGuards) { f.trials[store.BreakerKey{Handler: "test.fix", Scope: "s"}] = 99 },
			in: trialInput, kind: refuse, reason: vocab.ReasonBreaker, calls: []string{"claimCooldown", "claimBreakerTrial"}},
		{name: "budget spent: the cooldown and the trial are taken back", setup: func(f *fakeGuards) { f.spent["b/"] = 3 },
			in: trialInput, kind: refuse, reason: vocab.ReasonBudget, calls: []string{"claimCooldown", "claimBreakerTrial", "spendBudget"}},
		{name: "target busy: it waits, nothing kept", setup: func(f *fakeGuards) { f.busy[7] = true },
			in: trialInput, kind: wait, calls: []string{"claimCooldown", "claimBreakerTrial", "spendBudget", "startAction"}},
		{name: "drill: the drills budget is spent, not the production one", setup: func(f *fakeGuards) { f.spent["b/"] = 3 },
			in: func(f *fakeGuards) *guardInput {
				in := newInput(f)
				in.drill = drillOf{run: "d-1"}
				return in
			}, kind: pass, calls: []string{"claimCooldown", "spendBudget", "startAction"}},
		{name: "drill: the drills budget spent", setup: func(f *fakeGuards) { f.spent["drills/"] = 10 },
			in: func(f *fakeGuards) *guardInput {
				in := newInput(f)
				in.drill = drillOf{run: "d-1"}
				return in
			}, kind: refuse, reason: vocab.ReasonBudget, calls: []string{"claimCooldown", "spendBudget"}},
		{name: "notify: no budget", in: func(f *fakeGuards) *guardInput {
			in := newInput(f)
			in.c.Class = vocab.ClassNotify
			return in
		}, kind: pass, calls: []string{"claimCooldown", "startAction"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			if tc.setup != nil {
				tc.setup(f)
			}
			before := f.clone()
			in := tc.in(f)
			if v := run(in); v.kind != pass {
				t.Fatalf("checks: %+v", v)
			}
			v, err := claimGuards(context.Background(), in, f)
			if err != nil || v.kind != tc.kind || v.reason != tc.reason {
				t.Fatalf("claims: %+v %v, want kind %d %s", v, err, tc.kind, tc.reason)
			}
			if !slices.Equal(f.calls, tc.calls) {
				t.Errorf("calls %q, want %q", f.calls, tc.calls)
			}
			if tc.kind != pass && fmt.Sprint(f.fakeState) != fmt.Sprint(before) {
				t.Errorf("a claim that did not start kept something:\n got  %+v\n want %+v", f.fakeState, before)
			}
			if tc.kind == pass && (len(f.started) != 1 || len(f.cool) != 1) {
				t.Errorf("started %v cooldowns %v", f.started, f.cool)
			}
			if in.drill.run != "" && tc.kind == pass && (f.spent["drills/"] != 1 || f.spent["b/"] != before.spent["b/"]) {
				t.Errorf("a drill spent %v, want one unit of drills and nothing of b", f.spent)
			}
		})
	}
}

// readGuards reads each kind of state once for all claimed actions, with the keys that apply.
func TestReadGuards(t *testing.T) {
	f := newFake()
	f.cool[store.CooldownKey{Rule: "r", Target: "a"}] = tNow.Add(time.Minute)
	f.fakeState.breakers[store.BreakerKey{Handler: "test.fix", Scope: "s"}] = store.Breaker{State: store.BreakerOpen}
	f.stormy["r"] = 11
	mk := func(id int64, phase vocab.Phase, class vocab.Class, target string) store.Claimed {
		return store.Claimed{Action: store.Action{ID: id, Phase: phase, Rule: "r", Handler: "test.fix", Scope: "s", Class: class, Target: target}}
	}
	claimed := []store.Claimed{mk(1, vocab.PhaseActions, vocab.ClassDisruptive, "a"), mk(2, vocab.PhaseActions, vocab.ClassDisruptive, "b"),
		mk(3, vocab.PhaseEscalate, vocab.ClassNotify, "a"), mk(4, vocab.PhaseActions, vocab.ClassNotify, "c")}
	var g guardReads
	o := &Options{StormMaxTargets: 10, StormWindow: time.Minute}
	if err := readGuards(context.Background(), f, o, claimed, tNow, &g); err != nil {
		t.Fatal(err)
	}
	if want := []string{"cooldowns", "breakers", "stormyRules"}; !slices.Equal(f.calls, want) {
		t.Fatalf("calls %q, want %q: one read per kind", f.calls, want)
	}
	if len(g.cool) != 1 || len(g.breakers) != 1 || g.stormy["r"] != 11 {
		t.Fatalf("read %+v", g)
	}
	f.calls = nil
	if err := readGuards(context.Background(), f, &Options{}, claimed, tNow, &g); err != nil {
		t.Fatal(err)
	}
	if want := []string{"cooldowns", "breakers"}; !slices.Equal(f.calls, want) {
		t.Fatalf("storm guard off: calls %q, want %q", f.calls, want)
	}
}

// The budget counters the actions only evaluated (dry run, shadow) read are read once per pass, by
// the first that needs one, and what the actions the pass started spent afterwards is added: each
// verdict is the one a read per action in the pass's transaction would give.
func TestBudgetCountersReadOncePerPass(t *testing.T) {
	f := newFake()
	f.spent["b/s1"] = 1
	o := &Options{Budgets: []Budget{{Name: "b", Match: "test.*", Per: "namespace", Max: 2, Window: time.Hour}}}
	mk := func(id int64, mode vocab.Mode, class vocab.Class, scope string) store.Claimed {
		return store.Claimed{Action: store.Action{ID: id, Phase: vocab.PhaseActions, Rule: "r", Handler: "test.fix", Scope: scope,
			Class: class, Mode: mode, Target: fmt.Sprint(id)}}
	}
	d, shadow, enforce := vocab.ClassDisruptive, vocab.ModeShadow, vocab.ModeEnforce
	claimed := []store.Claimed{mk(1, shadow, d, "s1"), mk(2, enforce, d, "s1"), mk(3, shadow, d, "s1"), mk(4, shadow, d, "s2"),
		mk(5, shadow, vocab.ClassNotify, "s3"), mk(6, enforce, d, "s4")}
	var g guardReads
	ctx := context.Background()
	if err := readGuards(ctx, f, o, claimed, tNow, &g); err != nil {
		t.Fatal(err)
	}
	want := []store.BudgetRead{{BudgetKey: store.BudgetKey{Budget: "b", Key: "s1"}, Window: time.Hour},
		{BudgetKey: store.BudgetKey{Budget: "b", Key: "s2"}, Window: time.Hour}}
	if !slices.Equal(g.budgets.want, want) {
		t.Fatalf("counters to read %v, want %v: those of the actions only evaluated", g.budgets.want, want)
	}
	if slices.Contains(f.calls, "budgetsUsed") {
		t.Fatal("the counters were read before an action needed them")
	}
	used := func(scope string) int {
		t.Helper()
		n, err := g.budgetUsed(ctx, f, o.Budgets[0], scope, tNow)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := used("s1"); n != 1 {
		t.Fatalf("action 1 read %d, want 1", n)
	}
	f.spent["b/s1"]++ // action 2 starts: it spends a unit in the pass's transaction
	g.started(o, claimed[1])
	g.started(o, claimed[5]) // a counter not read yet: a later read sees its spend
	if n := used("s1"); n != 2 {
		t.Fatalf("action 3 read %d, want 2 (action 2's spend)", n)
	}
	if n := used("s2"); n != 0 {
		t.Fatalf("action 4 read %d, want 0", n)
	}
	if n := slices.Index(f.calls, "budgetsUsed"); n < 0 || slices.Contains(f.calls[n+1:], "budgetsUsed") {
		t.Fatalf("calls %q, want the counters read once", f.calls)
	}
	f.spent["b/s4"] = 1
	if n := used("s4"); n != 1 {
		t.Fatalf("a counter not listed read %d, want 1 (read on its own)", n)
	}
}

// Disruptive actions run one at a time per target; notify actions one at a time per target
// within their incident only: those of different incidents to one target run side by side.
func TestSlotKeys(t *testing.T) {
	mk := func(incident int64, class vocab.Class, target string) store.Claimed {
		return store.Claimed{Action: store.Action{IncidentID: incident, Class: class, Target: target}}
	}
	d, n := vocab.ClassDisruptive, vocab.ClassNotify
	for _, tc := range []struct {
		name string
		a, b store.Claimed
		same bool
	}{
		{"disruptive, one target, two incidents", mk(1, d, "t"), mk(2, d, "t"), true},
		{"disruptive, two targets", mk(1, d, "t"), mk(1, d, "u"), false},
		{"notify, one target, two incidents", mk(1, n, "t"), mk(2, n, "t"), false},
		{"notify, one target, one incident", mk(1, n, "t"), mk(1, n, "t"), true},
		{"notify and disruptive, one target, one incident", mk(1, n, "t"), mk(1, d, "t"), true},
		{"notify and disruptive, one target, two incidents", mk(1, n, "t"), mk(2, d, "t"), false},
		{"a target that looks like an incident's key", mk(1, d, "incident 1 target t"), mk(1, n, "t"), false},
	} {
		s := newSlots(make(chan struct{}, 2))
		s.started(slotKeys(tc.a)...)
		if got := !s.take(slotKeys(tc.b)...); got != tc.same {
			t.Errorf("%s: b waits for a = %v, want %v (%q, %q)", tc.name, got, tc.same, slotKeys(tc.a), slotKeys(tc.b))
		}
		s = newSlots(make(chan struct{}, 2))
		s.started(slotKeys(tc.b)...)
		if got := !s.take(slotKeys(tc.a)...); got != tc.same {
			t.Errorf("%s: a waits for b = %v, want %v", tc.name, got, tc.same)
		}
	}
}

func TestSlots(t *testing.T) {
	pool := make(chan struct{}, 2)
	s := newSlots(pool)
	if !s.take("a") || !s.take("b") || s.take("c") {
		t.Fatal("two slots: two takes, the third waits")
	}
	s.give()
	s.started("a")
	if s.take("a") {
		t.Fatal("a target started in this pass is busy")
	}
	if !s.take("c") || len(pool) != 2 {
		t.Fatalf("pool %d", len(pool))
	}
	s.releaseAll()
	if len(pool) != 0 || s.reserved != 0 {
		t.Fatalf("releaseAll left %d in the pool", len(pool))
	}
}

// fakeDecisions records what RecordDecision's policy said about one awaiting action.
type fakeDecisions struct {
	a        store.Action
	required int
}

func (f fakeDecisions) RecordDecision(_ context.Context, _ int64, approver, decision, _ string, at time.Time,
	policy func(store.DecisionCheck) error) (store.DecisionResult, error) {
	a := f.a
	return store.DecisionResult{Action: &a}, policy(store.DecisionCheck{Action: a, Required: max(f.required, 1), Approver: approver, Decision: decision, At: at})
}

func TestApprovalPolicy(t *testing.T) {
	planned := store.Action{State: vocab.StateAwaitingApproval, CreatedAt: tNow}
	for _, tc := range []struct {
		name     string
		required int
		approver string
		decision string
		after    time.Duration
		want     error
	}{
		{"named approval", 2, "api:alice", store.DecisionApprove, time.Minute, nil},
		{"anonymous approval of a two-person action", 2, "api", store.DecisionApprove, time.Minute, store.ErrAnonymousApprover},
		{"unnamed approval of a two-person action", 2, "", store.DecisionApprove, time.Minute, store.ErrAnonymousApprover},
		{"anonymous approval of a one-person action", 1, "api", store.DecisionApprove, time.Minute, nil},
		{"anonymous denial", 2, "api", store.DecisionDeny, time.Minute, nil},
		{"after approvals.ttl", 1, "slack:U1", store.DecisionApprove, 16 * time.Minute, store.ErrNotAwaiting},
		{"a denial after approvals.ttl", 1, "slack:U1", store.DecisionDeny, 16 * time.Minute, store.ErrNotAwaiting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := Approvals{Store: fakeDecisions{a: planned, required: tc.required}, TTL: 15 * time.Minute,
				Now: func() time.Time { return tNow.Add(tc.after) }}
			_, err := a.Decide(context.Background(), 1, tc.approver, tc.decision, "api")
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
		})
	}
	noTTL := Approvals{Store: fakeDecisions{a: planned}, Now: func() time.Time { return tNow.Add(1000 * time.Hour) }}
	if _, err := noTTL.Decide(context.Background(), 1, "api", store.DecisionApprove, "api"); err != nil {
		t.Fatalf("no approvals.ttl: %v", err)
	}
}

// BenchmarkRunGuards is the pipeline's own cost per action (the store in memory): the executor's
// time goes to the database, one read per kind of state per pass (BenchmarkExecute).
func BenchmarkRunGuards(b *testing.B) {
	f := newFake()
	pool := make(chan struct{}, 1)
	for range b.N {
		in := newInput(f)
		in.slots = newSlots(pool)
		if v := run(in); v.kind != pass {
			b.Fatal(v)
		}
		in.slots.releaseAll()
	}
}

type fakeNotCheckable struct{ fakeAction }

func (fakeNotCheckable) NotCheckable() {}

// An action whose Check calls nobody (handlers.NotCheckable) is decided in the pass that claimed
// it, without a callout: its dry run records what Check always says. Any other action waits for
// its callout.
func TestNotCheckableNeedsNoCallout(t *testing.T) {
	for _, tc := range []struct {
		name string
		act  handlers.Action
		want verdictKind
	}{
		{"not checkable", fakeNotCheckable{}, refuse},
		{"checkable", fakeAction{}, wait},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInput(newFake())
			in.o.DryRun = true
			in.build = func(store.Claimed) (handlers.Action, error) { return tc.act, nil }
			v := run(in)
			if v.kind != tc.want {
				t.Fatalf("verdict %+v, want kind %v", v, tc.want)
			}
			if tc.want == refuse && (v.state != vocab.StateDryRun || !strings.Contains(v.evaluation, handlers.ErrNotCheckable.Error())) {
				t.Fatalf("verdict %+v, want a dry run whose evaluation says %q", v, handlers.ErrNotCheckable)
			}
			if tc.want == wait && (v.callout == nil || !v.callout.check) {
				t.Fatalf("verdict %+v, want a wait for a callout asking Check", v)
			}
		})
	}
}

// A pass that runs what passes the guards claims no more than the free slots and a margin for
// what the guards decide without one; a dry run, which needs no slot, claims a whole batch.
func TestClaimLimit(t *testing.T) {
	for _, tc := range []struct {
		name        string
		dry         bool
		batch, busy int
		want        int
	}{
		{"free slots and the margin", false, 512, 0, 8 + claimMargin},
		{"every slot busy: the margin", false, 512, 8, claimMargin},
		{"a smaller batch", false, 10, 0, 10},
		{"dry run: the batch", true, 512, 8, 512},
	} {
		e := &Engine{o: Options{DryRun: tc.dry, ClaimBatch: tc.batch}, slots: make(chan struct{}, 8)}
		for range tc.busy {
			e.slots <- struct{}{}
		}
		if got := e.claimLimit(); got != tc.want {
			t.Errorf("%s: claim limit %d, want %d", tc.name, got, tc.want)
		}
	}
}

// slackStub stands for page.slack: its channel param is its target.
type slackStub struct{}

func (slackStub) Spec() handlers.Spec {
	return handlers.Spec{Name: slackPage, Class: vocab.ClassNotify, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "text", Type: handlers.String, Required: true}, {Name: "channel", Type: handlers.String}}}
}

func (slackStub) Build(p handlers.Params) (handlers.Action, error) {
	ch, _ := p["channel"].(string)
	if ch == "" {
		ch = "#default"
	}
	if ch == "#bad" {
		return nil, errors.New("channel #bad is not a channel")
	}
	return slackStubAction{stubAction{"slack:" + ch}}, nil
}

// slackStubAction, like page.slack's, checks nothing: a dry run needs no callout.
type slackStubAction struct{ stubAction }

func (slackStubAction) NotCheckable() {}

// A drill's page.slack goes to drills.page: the action is built again with that channel, and the
// params it runs with (recorded on the action as it starts) say so; a chained step's rendered
// params are kept, with the channel replaced.
func TestDrillPageRedirect(t *testing.T) {
	reg, err := handlers.NewRegistry(slackStub{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		params   string         // stored
		rendered map[string]any // a chained step's
		want     map[string]any
	}{
		{"channel replaced", `{"text": "db down", "channel": "#oncall"}`, nil, map[string]any{"text": "db down", "channel": "#drills"}},
		{"channel added", `{"text": "db down"}`, nil, map[string]any{"text": "db down", "channel": "#drills"}},
		{"a chained step's rendered params", `{"text": "{{ steps.a.result.x }}"}`, map[string]any{"text": "rendered"},
			map[string]any{"text": "rendered", "channel": "#drills"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := newInput(newFake())
			in.o.Handlers, in.o.DrillPage = reg, "#drills"
			in.c.Class, in.c.Handler, in.c.Target, in.c.RawParams = vocab.ClassNotify, slackPage, "slack:#oncall incident/1", []byte(tc.params)
			in.drill = drillOf{run: "d-1"}
			in.build = func(store.Claimed) (handlers.Action, error) {
				in.rendered = tc.rendered
				return stubAction{"slack:#oncall"}, nil
			}
			if v := run(in); v.kind != pass {
				t.Fatalf("verdict %+v, want pass", v)
			}
			if got := in.act.Target(); got != "slack:#drills" {
				t.Errorf("built for %q, want slack:#drills", got)
			}
			if !maps.Equal(in.rendered, tc.want) || in.drillTo != "#drills" {
				t.Errorf("params recorded %v (to %q), want %v", in.rendered, in.drillTo, tc.want)
			}
		})
	}
	t.Run("drills.page does not build", func(t *testing.T) {
		in := newInput(newFake())
		in.o.Handlers, in.o.DrillPage = reg, "#bad"
		in.c.Class, in.c.Handler, in.c.RawParams = vocab.ClassNotify, slackPage, []byte(`{"text": "x"}`)
		in.drill = drillOf{run: "d-1"}
		if v := run(in); v.kind != refuse || v.state != vocab.StateFailed || v.reason != vocab.ReasonBadParam || !strings.Contains(v.err, "drills.page #bad") {
			t.Fatalf("verdict %+v, want failed/bad_param naming drills.page", v)
		}
	})
	t.Run("in a dry run, the result says where it would go", func(t *testing.T) {
		in := newInput(newFake())
		in.o.Handlers, in.o.DrillPage, in.o.DryRun = reg, "#drills", true
		in.c.Class, in.c.Handler, in.c.RawParams = vocab.ClassNotify, slackPage, []byte(`{"text": "x"}`)
		in.drill = drillOf{run: "d-1"}
		v := run(in)
		if v.state != vocab.StateDryRun || v.reason != vocab.ReasonDryRun || !strings.Contains(v.result, "(drill: to #drills, drills.page)") {
			t.Fatalf("verdict %+v, want a dry run saying it would go to #drills", v)
		}
	})
}

// The drill page guard comes after the cooldown and before staleness: a drill's page in its
// rule's cooldown is skipped as any other, and one that is not sent needs no Check of its
// evidence (no callout).
func TestDrillPageOrder(t *testing.T) {
	notify := func(in *guardInput) {
		in.c.Class, in.c.Handler, in.drill = vocab.ClassNotify, "page.webhook", drillOf{run: "d-1"}
		in.build = func(store.Claimed) (handlers.Action, error) { return fakeAction{}, nil } // checkable
	}
	in := newInput(newFake())
	notify(in)
	in.read.cool = map[store.CooldownKey]time.Time{{Rule: "r", Target: "t1"}: tNow.Add(time.Minute)}
	if v := run(in); v.reason != vocab.ReasonCooldown {
		t.Fatalf("in cooldown: %+v, want skipped/cooldown", v)
	}
	in = newInput(newFake())
	notify(in)
	in.c.IncidentState = vocab.IncidentResolved
	if v := run(in); v.reason != vocab.ReasonCancelled {
		t.Fatalf("resolved: %+v, want skipped/cancelled", v)
	}
	in = newInput(newFake())
	notify(in)
	in.c.EvidenceAt = tNow.Add(-time.Hour)
	if v := run(in); v.kind != refuse || v.reason != vocab.ReasonDrill || v.callout != nil {
		t.Fatalf("stale: %+v, want dry_run/drill without a callout", v)
	}
}

// readGuards finds the drills among the claimed actions from their stored alerts, and the counters
// a drill only evaluated may read are the drills budget's, never the production ones.
func TestReadGuardsDrills(t *testing.T) {
	raw := func(labels map[string]string) []byte {
		a := alert.Alert{Name: "X", Source: alert.SourceAlertmanager, Status: alert.StatusFiring, Labels: labels, StartsAt: tNow}
		b, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// Drill is what the claim's SQL reads: the label's run, the store having started it.
	mk := func(id int64, labels map[string]string) store.Claimed {
		return store.Claimed{Action: store.Action{ID: id, Phase: vocab.PhaseActions, Rule: "r", Handler: "test.fix", Scope: "s",
			Class: vocab.ClassDisruptive, Mode: vocab.ModeShadow, Target: fmt.Sprint(id), Drill: labels[alert.DrillLabel]}, RawAlert: raw(labels)}
	}
	claimed := []store.Claimed{
		mk(1, map[string]string{"alertname": "X"}),
		mk(2, map[string]string{"alertname": "X", alert.DrillLabel: "d-1"}),
		mk(3, map[string]string{"alertname": "X", alert.DrillLabel: "d-2", alert.DrillPageLabel: "real"}),
		mk(4, map[string]string{"alertname": "X", "note": alert.DrillLabel}),                           // the name as a value: no drill
		{Action: store.Action{ID: 5}, RawAlert: []byte(`{"labels": {"` + alert.DrillLabel + `": 1}}`)}, // does not decode
	}
	o := &Options{Budgets: []Budget{{Name: "b", Match: "test.*", Per: "global", Max: 3, Window: time.Hour}},
		DrillBudget: drillBudgetDefaults(Budget{})}
	var g guardReads
	if err := readGuards(context.Background(), newFake(), o, claimed, tNow, &g); err != nil {
		t.Fatal(err)
	}
	want := map[int64]drillOf{2: {run: "d-1"}, 3: {run: "d-2", pageReal: true}}
	if !maps.Equal(g.drills, want) {
		t.Fatalf("drills %v, want %v", g.drills, want)
	}
	wantReads := []store.BudgetRead{{BudgetKey: store.BudgetKey{Budget: "b"}, Window: time.Hour},
		{BudgetKey: store.BudgetKey{Budget: "drills"}, Window: time.Hour}}
	if !slices.Equal(g.budgets.want, wantReads) {
		t.Fatalf("counters to read %v, want %v", g.budgets.want, wantReads)
	}
	g.budgets.used = map[store.BudgetKey]int{{Budget: "b"}: 0, {Budget: "drills"}: 0}
	g.started(o, claimed[1])
	if g.budgets.spent[store.BudgetKey{Budget: "drills"}] != 1 || g.budgets.spent[store.BudgetKey{Budget: "b"}] != 0 {
		t.Fatalf("a drill started: spent %v, want one unit of drills only", g.budgets.spent)
	}
}

// The drills budget is always drills, "*", global; a bound left zero takes 10 per 1h.
func TestDrillBudgetDefaults(t *testing.T) {
	for _, tc := range []struct{ in, want Budget }{
		{Budget{}, Budget{Name: "drills", Match: "*", Per: "global", Max: 10, Window: time.Hour}},
		{Budget{Name: "x", Match: "k8s.*", Per: "namespace", Max: 2, Window: time.Minute},
			Budget{Name: "drills", Match: "*", Per: "global", Max: 2, Window: time.Minute}},
	} {
		if got := drillBudgetDefaults(tc.in); got != tc.want {
			t.Errorf("drillBudgetDefaults(%+v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
	if got := (Options{}).withDefaults().DrillBudget; got.Max != 10 || got.Name != "drills" {
		t.Errorf("withDefaults: %+v", got)
	}
}

// The engine redirects drill pages through page.slack by name without importing its package.
func TestSlackPageName(t *testing.T) {
	if slackPage != slack.PageName {
		t.Fatalf("slackPage %q, notify/slack's page handler is %q", slackPage, slack.PageName)
	}
}

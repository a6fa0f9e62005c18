package engine

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// timed is a stub whose Spec depends on its configuration, as http.request's default timeout
// depends on handlers.http.timeout.
type timed struct {
	stub
	timeout time.Duration
}

func (h timed) Spec() handlers.Spec {
	s := h.stub.Spec()
	s.DefaultTimeout = h.timeout
	return s
}

func timedRegistry(t *testing.T, timeout time.Duration, names ...string) *handlers.Registry {
	t.Helper()
	var hs []handlers.Handler
	for _, n := range names {
		hs = append(hs, timed{stub{n, vocab.ClassDisruptive}, timeout})
	}
	reg, err := handlers.NewRegistry(hs...)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestReconfigure: a reload's handlers, rules and settings replace the old ones together (the
// specs read from the new handlers), the options fixed at New stay, zero settings take the
// defaults; a registry naming other handlers is refused and changes nothing.
func TestReconfigure(t *testing.T) {
	oldReg, oldSet := timedRegistry(t, time.Second, "test.fix", "test.page"), &rules.Set{Hash: "old"}
	e, err := New(Options{Store: (*store.Store)(nil), Handlers: oldReg, Rules: oldSet, Owner: "replica-a", MaxConcurrent: 3,
		Budgets: []Budget{{Name: "b", Match: "test.*", Per: "global", Max: 1, Window: time.Hour}}, ApprovalTTL: 15 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	newReg, newSet := timedRegistry(t, time.Minute, "test.fix", "test.page"), &rules.Set{Hash: "new"}
	budgets := []Budget{{Name: "b", Match: "test.*", Per: "global", Max: 5, Window: time.Hour}}
	if got := e.cur().DrillBudget; got.Max != 10 || got.Window != time.Hour || e.cur().DrillPage != "" {
		t.Errorf("drills at New: budget %+v page %q, want the default 10 per 1h and no page", got, e.cur().DrillPage)
	}
	if err := e.Reconfigure(Settings{Handlers: newReg, Rules: newSet, Budgets: budgets, ApprovalTTL: time.Hour,
		StormMaxTargets: 4, Paused: true, DrillBudget: Budget{Max: 3, Window: time.Minute}, DrillPage: "#drills"}); err != nil {
		t.Fatal(err)
	}
	l := e.cur()
	if e.Rules() != newSet || l.Handlers != newReg || e.matcher().handlers != newReg {
		t.Fatal("the rules or the handlers were not swapped")
	}
	if got := l.specs["test.fix"].DefaultTimeout; got != time.Minute {
		t.Errorf("spec timeout %v, want the new handler's 1m", got)
	}
	if diff := cmp.Diff(budgets, l.Budgets); diff != "" {
		t.Errorf("budgets (-want +got):\n%s", diff)
	}
	if want := (Budget{Name: "drills", Match: "*", Per: "global", Max: 3, Window: time.Minute}); l.DrillBudget != want || l.DrillPage != "#drills" {
		t.Errorf("drills: budget %+v page %q, want %+v and #drills", l.DrillBudget, l.DrillPage, want)
	}
	if l.ApprovalTTL != time.Hour || l.StormMaxTargets != 4 || !l.Paused || l.StormWindow != 5*time.Minute || l.BreakerFailures != 3 {
		t.Errorf("settings %+v", l.Options)
	}
	if l.Owner != "replica-a" || l.MaxConcurrent != 3 || cap(e.slots) != 3 {
		t.Errorf("the options fixed at New changed: owner %q, max concurrent %d", l.Owner, l.MaxConcurrent)
	}

	for _, s := range []Settings{
		{Handlers: timedRegistry(t, time.Second, "test.fix"), Rules: &rules.Set{}},
		{Rules: &rules.Set{}},
		{Handlers: newReg},
	} {
		if err := e.Reconfigure(s); err == nil {
			t.Errorf("Reconfigure(%+v) = nil, want an error", s)
		}
	}
	if e.Rules() != newSet || e.cur() != l {
		t.Fatal("a refused Reconfigure changed what runs")
	}
}

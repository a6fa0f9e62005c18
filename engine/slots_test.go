package engine_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/internal/testwait"
)

// Only disruptive actions run one at a time per target: while one runs, another disruptive action
// on its target waits (the claim skips it; the slot guard and the store's index would refuse it),
// whereas notify actions to one target (a pager's URL) start side by side, as many as the
// execution slots (safety.max_concurrent_actions) allow.
func TestOneAtATimePerTargetIsForDisruptiveActions(t *testing.T) {
	for _, tc := range []struct {
		name, handler string
		slots         int
		together      int // started by the first pass, running together
	}{
		{"disruptive: one at a time", "test.fix", 8, 1},
		{"notify: side by side", "test.page", 8, 3},
		{"notify: as many as the slots", "test.page", 2, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, fmt.Sprintf(`
rules:
  - name: one-target
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: %s
        params: {target: "shop"}
`, tc.handler), func(o *engine.Options) { o.MaxConcurrent = tc.slots; o.Lease = time.Hour })
			rec := h.fix
			if tc.handler == "test.page" {
				rec = h.page
			}
			rec.block = make(chan struct{})
			var as []alert.Alert
			for _, pod := range []string{"a", "b", "c"} {
				as = append(as, mkAlert("KubePodCrashLooping", alert.StatusFiring, t0, map[string]string{"pod": pod}))
			}
			h.process(as...)
			ctx := context.Background()
			if n, err := h.eng.ExecuteOnce(ctx); err != nil || n != tc.together {
				t.Fatalf("first pass: n=%d err=%v, want %d started", n, err, tc.together)
			}
			testwait.Until(t, 10*time.Second, fmt.Sprintf("%d handler calls in flight", tc.together), func() bool {
				return len(rec.Calls()) == tc.together
			})
			if n, err := h.eng.ExecuteOnce(ctx); err != nil || n != 0 {
				t.Fatalf("pass while they run: n=%d err=%v, want nothing more started", n, err)
			}
			if n := h.count(`SELECT count(*) FROM actions WHERE state = 'running'`); n != tc.together {
				t.Fatalf("%d actions running on the target, want %d", n, tc.together)
			}
			close(rec.block)
			h.settle()
			expectActions(t, h.actions(), "actions/0 "+tc.handler+" succeeded ", "actions/0 "+tc.handler+" succeeded ",
				"actions/0 "+tc.handler+" succeeded ")
			if len(rec.Calls()) != 3 {
				t.Fatalf("calls %v, want each action once", rec.Calls())
			}
		})
	}
}

// Notify actions of one incident still run one at a time per target: a page's resolve event waits
// for its trigger in flight, so the pager never gets the resolve first.
func TestPageResolveWaitsForItsTriggerInFlight(t *testing.T) {
	h := newHarness(t, pageRule, func(o *engine.Options) { o.Lease = time.Hour })
	h.page.block = make(chan struct{})
	ctx := context.Background()
	a := mkAlert("PostgresDown", alert.StatusFiring, t0, map[string]string{"cluster": "main"})
	h.process(a)
	if n, err := h.eng.ExecuteOnce(ctx); err != nil || n != 1 {
		t.Fatalf("trigger: n=%d err=%v", n, err)
	}
	testwait.Until(t, 10*time.Second, "the trigger is in flight", func() bool { return len(h.page.Calls()) == 1 })
	r := a
	r.Status = alert.StatusResolved
	h.process(r)
	if n, err := h.eng.ExecuteOnce(ctx); err != nil || n != 0 {
		t.Fatalf("resolve while the trigger is in flight: n=%d err=%v, want it to wait", n, err)
	}
	close(h.page.block)
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.page succeeded ", "resolve/0 test.page succeeded ")
	if calls := h.page.Calls(); len(calls) != 2 || calls[0].Note != "trigger" || calls[1].Note != "resolve" {
		t.Fatalf("pager calls %+v, want the trigger, then the resolve", calls)
	}
}

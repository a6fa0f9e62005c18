package probe

import (
	"context"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

// *store.Store is the StateStore serve uses.
var _ StateStore = (*store.Store)(nil)

// TestStateSurvivesFailover: a second Runner on the same store (the new leader) continues the
// episode the first one started: no second firing alert, and the resolved alert has the first
// failure's startsAt. Alerts left pending by the old leader are published by the new one.
func TestStateSurvivesFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	cfgs := parseProbes(t, "  - {name: api, tcp: {address: 'api:80'}, failures_to_fire: 2}\n  - {name: other, disk: {path: /}}\n")
	clk := newClock()

	recA := &recorder{}
	a := newRunner(t, cfgs, Options{Publish: recA.publish, State: st, Now: clk.now})
	start := clk.now()
	for range 2 {
		if _, err := a.Feed(ctx, "api", down); err != nil {
			t.Fatal(err)
		}
		clk.advance(10 * time.Second)
	}
	if got := recA.all(); len(got) != 1 || !got[0].StartsAt.Equal(start) {
		t.Fatalf("leader A published %+v, want one firing alert from %s", got, start)
	}
	// A dies; B takes over with the same store: the target is still down, the episode goes on
	// (no second firing alert).
	recB := &recorder{}
	b := newRunner(t, cfgs, Options{Publish: recB.publish, State: st, Now: clk.now})
	if res, err := b.Feed(ctx, "api", down); err != nil || !res.Firing || len(res.Alerts) != 0 {
		t.Fatalf("B's first failure: %+v, %v; want still firing, nothing emitted", res, err)
	}
	// The target recovers but the bus is down: the resolved alert stays pending, in the store.
	clk.advance(10 * time.Second)
	recovered := clk.now()
	recB.setFailing(true)
	if _, err := b.Feed(ctx, "api", up); err == nil {
		t.Fatal("publish with the bus down did not fail")
	}
	// B dies too; C publishes B's pending resolved alert at its first run.
	recC := &recorder{}
	c := newRunner(t, cfgs, Options{Publish: recC.publish, State: st, Now: clk.now})
	clk.advance(10 * time.Second)
	if _, err := c.Feed(ctx, "api", up); err != nil {
		t.Fatal(err)
	}
	got := recC.all()
	if len(got) != 1 || got[0].Status != alert.StatusResolved || !got[0].StartsAt.Equal(start) ||
		!got[0].EndsAt.Equal(recovered) || got[0].Fingerprint != recA.all()[0].Fingerprint {
		t.Fatalf("leader C published %+v, want the resolved alert of A's episode (startsAt %s, endsAt %s)", got, start, recovered)
	}
	if st, _ := c.State("api"); st.Firing || len(st.Pending) != 0 {
		t.Errorf("state after resolving = %+v", st)
	}
}

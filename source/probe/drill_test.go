package probe

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

// drillList is what running drills list (probe name -> run id), as the store would answer; it
// counts its reads and fails while err is set.
type drillList struct {
	mu    sync.Mutex
	m     map[string]string
	err   error
	reads int
}

func (d *drillList) read(context.Context) (map[string]string, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reads++
	if d.err != nil {
		return nil, d.err
	}
	return maps.Clone(d.m), nil
}

func (d *drillList) set(m map[string]string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m, d.err = m, err
}

func (d *drillList) count() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reads
}

// target is a TCP server a probe checks, stopped and started again on the same address.
type target struct {
	t    *testing.T
	addr string
	ln   net.Listener
}

func newTarget(t *testing.T) *target {
	t.Helper()
	tg := &target{t: t, addr: "127.0.0.1:0"}
	tg.start()
	tg.addr = tg.ln.Addr().String()
	t.Cleanup(tg.stop)
	return tg
}

func (tg *target) start() {
	tg.t.Helper()
	ln, err := net.Listen("tcp", tg.addr)
	if err != nil {
		tg.t.Fatalf("listen on %s: %v", tg.addr, err)
	}
	tg.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func (tg *target) stop() {
	if tg.ln != nil {
		tg.ln.Close()
		tg.ln = nil
	}
}

// TestDrillEpisodes: a real TCP probe against a server the test stops and starts. Only an episode
// that starts while a drill lists the probe is the drill's, and then every alert of it is (its
// heartbeats and its resolve, after the drill ended too, with the firing alert's fingerprint);
// the next episode is not, unless a drill still lists the probe. Healthy runs never read the
// drills.
func TestDrillEpisodes(t *testing.T) {
	tg := newTarget(t)
	clk := newClock()
	drills := &drillList{}
	rec := &recorder{}
	r := newRunner(t, parseProbes(t, fmt.Sprintf("  - {name: api, tcp: {address: %q}}\n", tg.addr)),
		Options{Publish: rec.publish, Now: clk.now, Heartbeat: time.Minute, Drills: &Drills{Read: drills.read, Now: clk.now}})
	// run runs the probe once, a round later, and returns the alert it emitted ("" none).
	run := func(step string) alert.Alert {
		t.Helper()
		clk.advance(30 * time.Second)
		res := runOnce(t, r, "api")
		if len(res.Alerts) > 1 {
			t.Fatalf("%s: %d alerts", step, len(res.Alerts))
		}
		if len(res.Alerts) == 0 {
			return alert.Alert{}
		}
		return res.Alerts[0]
	}
	want := func(step string, a alert.Alert, status alert.Status, drill string) {
		t.Helper()
		if a.Status != status || a.Drill() != drill || a.Fingerprint != alert.Fingerprint(a.Labels) {
			t.Errorf("%s: alert %s with drill %q (labels %v), want %s with drill %q", step, a.Status, a.Drill(), a.Labels, status, drill)
		}
	}

	drills.set(map[string]string{"api": "api-down-20261122T030000Z-0001"}, nil)
	if a := run("healthy"); a.Status != "" || drills.count() != 0 {
		t.Fatalf("healthy run: alert %+v, %d drill reads; want none", a, drills.count())
	}

	// 1. An episode starting while no drill lists the probe stays a real one, although a drill
	// starts during it.
	drills.set(map[string]string{"other": "db-failover-20261122T030000Z-0002"}, nil)
	tg.stop()
	realFired := run("down")
	want("real episode fires", realFired, alert.StatusFiring, "")
	drills.set(map[string]string{"api": "api-down-20261122T030000Z-0001"}, nil)
	clk.advance(30 * time.Second)
	want("real episode heartbeat", run("still down"), alert.StatusFiring, "")
	tg.start()
	resolved := run("up")
	want("real episode resolves", resolved, alert.StatusResolved, "")
	if resolved.Fingerprint != realFired.Fingerprint {
		t.Errorf("real episode: resolve fingerprint %s, firing %s", resolved.Fingerprint, realFired.Fingerprint)
	}

	// 2. The drill lists the probe when an episode starts: all of it is the drill's, even after
	// the drill stopped listing it.
	tg.stop()
	fired := run("down during the drill")
	want("drill episode fires", fired, alert.StatusFiring, "api-down-20261122T030000Z-0001")
	drills.set(nil, nil)
	clk.advance(30 * time.Second)
	want("drill episode heartbeat", run("still down"), alert.StatusFiring, "api-down-20261122T030000Z-0001")
	tg.start()
	resolved = run("up")
	want("drill episode resolves", resolved, alert.StatusResolved, "api-down-20261122T030000Z-0001")
	if resolved.Fingerprint != fired.Fingerprint || fired.Fingerprint == realFired.Fingerprint {
		t.Errorf("drill episode: firing %s, resolve %s, real episode %s; want the drill's two equal, apart from the real one",
			fired.Fingerprint, resolved.Fingerprint, realFired.Fingerprint)
	}

	// 3. The next episode, no drill listing the probe: a real one again.
	tg.stop()
	want("next episode", run("down again"), alert.StatusFiring, "")
	if st, _ := r.State("api"); st.Labels[alert.DrillLabel] != "" {
		t.Errorf("state labels %v of a real episode carry a drill", st.Labels)
	}
}

// TestDrillsOneReadPerRound: the probes whose episodes start in one round share one read, even on
// separate Runners (the app runs one per probe); the next round reads again. A failed read is no
// drill and does not fail the run.
func TestDrillsOneReadPerRound(t *testing.T) {
	tg := newTarget(t)
	tg.stop()
	clk := newClock()
	list := &drillList{m: map[string]string{"a": "run-1", "b": "run-1"}}
	shared := &Drills{Read: list.read, Now: clk.now, Round: 10 * time.Second}
	var runners []*Runner
	for _, name := range []string{"a", "b", "c"} {
		runners = append(runners, newRunner(t, parseProbes(t, fmt.Sprintf("  - {name: %s, tcp: {address: %q}}\n", name, tg.addr)),
			Options{Now: clk.now, Drills: shared}))
	}
	for i, name := range []string{"a", "b", "c"} {
		res := runOnce(t, runners[i], name)
		if wantDrill := map[string]string{"a": "run-1", "b": "run-1"}[name]; len(res.Alerts) != 1 || res.Alerts[0].Drill() != wantDrill {
			t.Errorf("probe %s: alerts %+v, want one firing with drill %q", name, res.Alerts, wantDrill)
		}
		clk.advance(time.Second)
	}
	if n := list.count(); n != 1 {
		t.Errorf("%d reads for three episodes starting in one round, want 1", n)
	}

	// Resolve a, then it fails again in a later round, while the store cannot be read.
	tg.start()
	runOnce(t, runners[0], "a")
	tg.stop()
	list.set(map[string]string{"a": "run-2"}, errors.New("database unavailable"))
	clk.advance(10 * time.Second)
	res, err := runners[0].RunOnce(context.Background(), "a")
	if err != nil || len(res.Alerts) != 1 || res.Alerts[0].Status != alert.StatusFiring || res.Alerts[0].Drill() != "" {
		t.Errorf("episode starting while the drills cannot be read: %+v, %v; want a firing alert without a drill", res.Alerts, err)
	}
	if n := list.count(); n != 2 {
		t.Errorf("%d reads after a second round, want 2", n)
	}
}

// TestDrillEpisodeSurvivesFailover: the drill's run id is saved with the episode, so a new leader
// (another Runner on the same store, whose drill has ended) sends the resolve with it.
func TestDrillEpisodeSurvivesFailover(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{MaxConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	tg := newTarget(t)
	cfgs := parseProbes(t, fmt.Sprintf("  - {name: api, tcp: {address: %q}}\n", tg.addr))
	clk := newClock()

	recA := &recorder{}
	a := newRunner(t, cfgs, Options{Publish: recA.publish, State: st, Now: clk.now,
		Drills: &Drills{Read: (&drillList{m: map[string]string{"api": "run-1"}}).read, Now: clk.now}})
	tg.stop()
	runOnce(t, a, "api")
	fired := recA.all()
	if len(fired) != 1 || fired[0].Drill() != "run-1" {
		t.Fatalf("leader A published %+v, want a firing alert of drill run-1", fired)
	}

	recB := &recorder{}
	b := newRunner(t, cfgs, Options{Publish: recB.publish, State: st, Now: clk.now,
		Drills: &Drills{Read: (&drillList{}).read, Now: clk.now}})
	tg.start()
	clk.advance(30 * time.Second)
	runOnce(t, b, "api")
	got := recB.all()
	if len(got) != 1 || got[0].Status != alert.StatusResolved || got[0].Drill() != "run-1" || got[0].Fingerprint != fired[0].Fingerprint {
		t.Fatalf("leader B published %+v, want the resolve of A's drill episode (drill run-1, fingerprint %s)", got, fired[0].Fingerprint)
	}
}

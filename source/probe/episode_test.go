package probe

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/responder-sre/responder/alert"
)

var (
	down = Measurement{Value: math.NaN(), Err: errors.New("connection refused")}
	up   = Measurement{Value: 0.01}
)

// step is one fed measurement and the alerts it must emit ("" none, "firing", "resolved").
type step struct {
	advance time.Duration
	m       Measurement
	want    string
}

func TestEpisodes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		extra string // extra keys of the probe
		steps []step
	}{
		{"fires at once and resolves", "", []step{
			{0, up, ""}, {10 * time.Second, down, "firing"}, {10 * time.Second, down, ""}, {10 * time.Second, up, "resolved"}, {10 * time.Second, up, ""},
		}},
		{"failures_to_fire 3", "failures_to_fire: 3", []step{
			{0, down, ""}, {10 * time.Second, down, ""}, {10 * time.Second, up, ""}, // streak broken
			{10 * time.Second, down, ""}, {10 * time.Second, down, ""}, {10 * time.Second, down, "firing"},
		}},
		{"successes_to_resolve 2", "successes_to_resolve: 2", []step{
			{0, down, "firing"}, {10 * time.Second, up, ""}, {10 * time.Second, down, ""}, // flap: still firing
			{10 * time.Second, up, ""}, {10 * time.Second, up, "resolved"},
		}},
		{"heartbeat while firing", "", []step{
			{0, down, "firing"}, {2 * time.Minute, down, ""}, {3 * time.Minute, down, "firing"}, {time.Minute, down, ""},
		}},
		{"firing_when threshold", "firing_when: value > 0.5", []step{
			{0, Measurement{Value: 0.2}, ""}, {10 * time.Second, Measurement{Value: 0.7}, "firing"},
			{10 * time.Second, Measurement{Value: 0.4}, "resolved"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			rec := &recorder{}
			item := "  - {name: api, tcp: {address: 'api:80'}, labels: {team: web}}\n"
			if tc.extra != "" {
				item = strings.Replace(item, "}}\n", "}, "+tc.extra+"}\n", 1)
			}
			r := newRunner(t, parseProbes(t, item), Options{Publish: rec.publish, Now: clk.now})
			for i, s := range tc.steps {
				clk.advance(s.advance)
				res, err := r.Feed(context.Background(), "api", s.m)
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				got := ""
				if len(res.Alerts) > 1 {
					t.Fatalf("step %d emitted %d alerts", i, len(res.Alerts))
				}
				if len(res.Alerts) == 1 {
					got = string(res.Alerts[0].Status)
				}
				if got != s.want {
					t.Fatalf("step %d (%v): emitted %q, want %q", i, s.m.Err, got, s.want)
				}
			}
			all := rec.all()
			if len(all) == 0 {
				t.Fatal("nothing published")
			}
			fp := all[0].Fingerprint
			for _, a := range all {
				if a.Source != alert.SourceProbe || a.Name != "api" || a.Labels[alert.NameLabel] != "api" ||
					a.Labels[LabelKind] != "tcp" || a.Labels[LabelInstance] != "api:80" || a.Labels["team"] != "web" {
					t.Errorf("alert %+v: wrong identity or labels", a)
				}
				if a.Fingerprint != fp || a.Fingerprint != alert.Fingerprint(a.Labels) {
					t.Errorf("fingerprint %s, want %s for every alert of the episode", a.Fingerprint, fp)
				}
				if err := a.Validate(); err != nil {
					t.Errorf("invalid alert: %v", err)
				}
			}
		})
	}
}

// TestEpisodeTimes: startsAt is the first failure of the streak that fired, endsAt the first
// success of the streak that resolved; the alert carries the value and the reason.
func TestEpisodeTimes(t *testing.T) {
	clk := newClock()
	rec := &recorder{}
	r := newRunner(t, parseProbes(t, "  - {name: api, tcp: {address: 'api:80'}, failures_to_fire: 2, successes_to_resolve: 2}\n"),
		Options{Publish: rec.publish, Now: clk.now})
	ctx := context.Background()
	feed := func(m Measurement) Result {
		t.Helper()
		res, err := r.Feed(ctx, "api", m)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	feed(up)
	start := clk.advance(10 * time.Second)
	feed(Measurement{Value: 1.5, Err: errors.New("status 503")})
	clk.advance(10 * time.Second)
	fired := feed(Measurement{Value: 2.5, Err: errors.New("status 503")})
	if len(fired.Alerts) != 1 {
		t.Fatalf("second failure emitted %d alerts, want the firing one", len(fired.Alerts))
	}
	a := fired.Alerts[0]
	if !a.StartsAt.Equal(start) || a.Status != alert.StatusFiring || a.Value == nil || *a.Value != 2.5 ||
		a.Annotations[SummaryAnnotation] != "status 503" || !a.EndsAt.IsZero() {
		t.Errorf("firing alert = %+v (value %v), want startsAt %s, value 2.5, summary", a, a.ValueOrNaN(), start)
	}
	if got := a.ActiveFor(clk.now()); got != 10*time.Second {
		t.Errorf("ActiveFor = %s, want 10s: a rule's for: counts from the first failure", got)
	}
	recovered := clk.advance(10 * time.Second)
	feed(up)
	clk.advance(10 * time.Second)
	res := feed(up)
	if len(res.Alerts) != 1 {
		t.Fatalf("second success emitted %d alerts, want the resolved one", len(res.Alerts))
	}
	if r := res.Alerts[0]; r.Status != alert.StatusResolved || !r.StartsAt.Equal(start) || !r.EndsAt.Equal(recovered) || r.Fingerprint != a.Fingerprint {
		t.Errorf("resolved alert = %+v, want startsAt %s endsAt %s, fingerprint %s", r, start, recovered, a.Fingerprint)
	}
	// The next failure is a new episode with a new startsAt.
	next := clk.advance(10 * time.Second)
	feed(down)
	clk.advance(10 * time.Second)
	if res := feed(down); len(res.Alerts) != 1 || !res.Alerts[0].StartsAt.Equal(next) || res.Alerts[0].ID() == a.ID() {
		t.Errorf("new episode alerts = %+v, want one firing from %s", res.Alerts, next)
	}
}

// TestLabelsFixedForEpisode: a postgres node whose role changes mid-episode resolves the alert
// it fired (same labels, same fingerprint); the next episode uses the new role.
func TestLabelsFixedForEpisode(t *testing.T) {
	clk := newClock()
	rec := &recorder{}
	r := newRunner(t, parseProbes(t, "  - {name: db, postgres: {dsn: 'postgres://u@db:5432/app'}, firing_when: value > 30}\n"),
		Options{Publish: rec.publish, Now: clk.now})
	ctx := context.Background()
	primary := map[string]string{LabelRole: RolePrimary}
	standby := map[string]string{LabelRole: RoleStandby}
	for _, m := range []Measurement{
		{Value: 0.01, Labels: primary},
		{Value: math.NaN(), Err: errors.New("connection refused")}, // fires with the last known role
		{Value: 0.5, Labels: standby},                              // resolves: promoted elsewhere, this node came back as a standby
		{Value: 90, Labels: standby},                               // lagging: a new episode, as a standby
	} {
		clk.advance(10 * time.Second)
		if _, err := r.Feed(ctx, "db", m); err != nil {
			t.Fatal(err)
		}
	}
	all := rec.all()
	if len(all) != 3 {
		t.Fatalf("published %d alerts, want firing, resolved, firing: %+v", len(all), all)
	}
	if all[0].Labels[LabelRole] != RolePrimary || all[1].Labels[LabelRole] != RolePrimary || all[0].Fingerprint != all[1].Fingerprint {
		t.Errorf("first episode: roles %q/%q, fingerprints %s/%s; want primary for both, equal", all[0].Labels[LabelRole], all[1].Labels[LabelRole], all[0].Fingerprint, all[1].Fingerprint)
	}
	if all[2].Labels[LabelRole] != RoleStandby || all[2].Labels[LabelInstance] != "db:5432/app" || *all[2].Value != 90 {
		t.Errorf("second episode alert %+v, want role standby, instance db:5432/app, value 90", all[2])
	}
}

// TestPublishRetry: while Publish fails, the alerts stay pending and go out, in order, at the
// next run that can publish; nothing is lost and nothing is reordered.
func TestPublishRetry(t *testing.T) {
	clk := newClock()
	rec := &recorder{failing: true}
	r := newRunner(t, parseProbes(t, "  - {name: api, tcp: {address: 'api:80'}}\n"), Options{Publish: rec.publish, Now: clk.now})
	ctx := context.Background()
	if _, err := r.Feed(ctx, "api", down); err == nil || !strings.Contains(err.Error(), "bus down") {
		t.Fatalf("Feed with the bus down: err = %v, want the publish error", err)
	}
	clk.advance(10 * time.Second)
	if _, err := r.Feed(ctx, "api", up); err == nil {
		t.Fatal("second Feed with the bus down: no error")
	}
	if st, _ := r.State("api"); len(st.Pending) != 2 {
		t.Fatalf("pending = %d alerts, want firing and resolved", len(st.Pending))
	}
	rec.setFailing(false)
	clk.advance(10 * time.Second)
	if _, err := r.Feed(ctx, "api", up); err != nil {
		t.Fatal(err)
	}
	all := rec.all()
	if len(all) != 2 || all[0].Status != alert.StatusFiring || all[1].Status != alert.StatusResolved || !all[0].StartsAt.Equal(all[1].StartsAt) {
		t.Fatalf("published %+v, want the firing then the resolved alert of one episode", all)
	}
	if st, _ := r.State("api"); len(st.Pending) != 0 {
		t.Errorf("pending after a successful publish = %d", len(st.Pending))
	}
}

// memStore is an in-memory StateStore for tests that do not need PostgreSQL.
type memStore struct{ m map[string][]byte }

func (s *memStore) LoadProbeStates(context.Context) (map[string][]byte, error) { return s.m, nil }
func (s *memStore) SaveProbeState(_ context.Context, name string, b []byte) error {
	s.m[name] = append([]byte(nil), b...)
	return nil
}

// TestSavesOnlyChanges: a healthy probe does not write its state at every run.
func TestSavesOnlyChanges(t *testing.T) {
	clk := newClock()
	st := &countingStore{memStore: memStore{m: map[string][]byte{}}}
	r := newRunner(t, parseProbes(t, "  - {name: api, tcp: {address: 'api:80'}}\n"), Options{State: st, Now: clk.now})
	for range 10 {
		clk.advance(10 * time.Second)
		if _, err := r.Feed(context.Background(), "api", up); err != nil {
			t.Fatal(err)
		}
	}
	if st.saves != 0 {
		t.Errorf("%d saves for 10 healthy runs, want 0", st.saves)
	}
	clk.advance(10 * time.Second)
	if _, err := r.Feed(context.Background(), "api", down); err != nil {
		t.Fatal(err)
	}
	if st.saves == 0 {
		t.Error("a failure that fired was not saved")
	}
}

type countingStore struct {
	memStore
	saves int
}

func (s *countingStore) SaveProbeState(ctx context.Context, name string, b []byte) error {
	s.saves++
	return s.memStore.SaveProbeState(ctx, name, b)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := newRunner(t, parseProbes(t, "  - {name: a, tcp: {address: 'a:1'}}\n  - {name: b, disk: {path: /}}\n"), Options{Registerer: reg})
	want := `
# HELP responder_probe_success Whether the last run of the probe succeeded (1) or failed (0).
# TYPE responder_probe_success gauge
responder_probe_success{kind="disk",probe="b"} 0
responder_probe_success{kind="tcp",probe="a"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "responder_probe_success"); err != nil {
		t.Errorf("before any run: %v", err)
	}
	if _, err := r.Feed(context.Background(), "b", Measurement{Value: 0.5, Duration: 250 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(r.m.success.WithLabelValues("b", "disk")); got != 1 {
		t.Errorf("success after a good run = %v", got)
	}
	if got := testutil.ToFloat64(r.m.duration.WithLabelValues("b", "disk")); got != 0.25 {
		t.Errorf("duration = %v, want 0.25", got)
	}
	// A second Runner on the same registry (a reload) shares the collectors.
	if _, err := New(nil, Options{Registerer: reg}); err != nil {
		t.Errorf("second Runner on the same registry: %v", err)
	}
	if _, err := r.Feed(context.Background(), "nope", up); err == nil {
		t.Error("Feed of an unknown probe: no error")
	}
}

// refusingStore refuses saves while refuse is set, like a store whose fencing token check fails.
type refusingStore struct {
	memStore
	refuse bool
}

func (s *refusingStore) SaveProbeState(ctx context.Context, name string, b []byte) error {
	if s.refuse {
		return errors.New("stale leader token")
	}
	return s.memStore.SaveProbeState(ctx, name, b)
}

// TestNoPublishWithoutSave: a state that cannot be saved (a deposed leader's save is refused by its
// fencing token) is not published; the alert stays pending and goes out once a save succeeds.
func TestNoPublishWithoutSave(t *testing.T) {
	clk := newClock()
	rec := &recorder{}
	st := &refusingStore{memStore: memStore{m: map[string][]byte{}}, refuse: true}
	r := newRunner(t, parseProbes(t, "  - {name: api, tcp: {address: 'api:80'}}\n"), Options{Publish: rec.publish, State: st, Now: clk.now})
	ctx := context.Background()
	if _, err := r.Feed(ctx, "api", down); err == nil || !strings.Contains(err.Error(), "stale leader token") {
		t.Fatalf("Feed with saves refused: err = %v", err)
	}
	if n := len(rec.all()); n != 0 {
		t.Fatalf("published %d alerts although the state could not be saved", n)
	}
	st.refuse = false
	clk.advance(10 * time.Second)
	if _, err := r.Feed(ctx, "api", down); err != nil {
		t.Fatal(err)
	}
	if all := rec.all(); len(all) != 1 || all[0].Status != alert.StatusFiring {
		t.Fatalf("published %+v, want the firing alert once the save succeeded", all)
	}
}

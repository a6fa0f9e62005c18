package leader

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// clock is an injected clock tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var t0 = time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)

const ttl = 10 * time.Second

// The app passes its *store.Store.
var _ LeaseStore = (*store.Store)(nil)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(context.Background(), pgtest.NewDatabase(t), store.Options{Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

type member struct {
	e   *Elector
	reg *prometheus.Registry
}

func newMember(t *testing.T, st *store.Store, holder string, now func() time.Time, renewEvery time.Duration) member {
	t.Helper()
	reg := prometheus.NewRegistry()
	e, err := New(st, "probes", holder, Options{TTL: ttl, RenewEvery: renewEvery, Now: now, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return member{e, reg}
}

// gauge reads responder_leader{name="probes"} from m's registry.
func (m member) gauge(t *testing.T) float64 {
	t.Helper()
	mfs, err := m.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "responder_leader" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, lp := range mt.GetLabel() {
				if lp.GetName() == "name" && lp.GetValue() == "probes" {
					return mt.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatal(`responder_leader{name="probes"} not registered`)
	return 0
}

// wantLeading fails unless exactly the members marked true lead, with token for the leader, and
// their gauges agree.
func wantLeading(t *testing.T, token int64, ms map[string]member, leaders ...string) {
	t.Helper()
	lead := map[string]bool{}
	for _, l := range leaders {
		lead[l] = true
	}
	for name, m := range ms {
		tok, ok := m.e.Leading()
		if ok != lead[name] {
			t.Fatalf("%s Leading = %v, want %v", name, ok, lead[name])
		}
		if ok && tok != token {
			t.Fatalf("%s leads with token %d, want %d", name, tok, token)
		}
		if g, want := m.gauge(t), map[bool]float64{true: 1}[ok]; g != want {
			t.Fatalf("%s responder_leader = %v, want %v", name, g, want)
		}
	}
}

func TestElectorsOneLeaderAtATime(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	c := &clock{t: t0}
	a := newMember(t, st, "a", c.Now, ttl/3)
	b := newMember(t, st, "b", c.Now, ttl/3)
	ms := map[string]member{"a": a, "b": b}

	a.e.step(ctx)
	b.e.step(ctx)
	wantLeading(t, 1, ms, "a")

	for range 3 { // renewals keep a in charge well past one TTL
		c.Add(ttl / 2)
		a.e.step(ctx)
		b.e.step(ctx)
		wantLeading(t, 1, ms, "a")
	}

	// a is paused past its TTL: it stops believing it leads before anyone takes over.
	c.Add(ttl) // the expiry instant: the lease is still a's in the store, but a no longer acts
	wantLeading(t, 0, ms)
	b.e.step(ctx)
	wantLeading(t, 0, ms)

	c.Add(time.Microsecond)
	b.e.step(ctx)
	wantLeading(t, 2, ms, "b")

	// a wakes up: its renewal is refused and it stays a follower.
	a.e.step(ctx)
	wantLeading(t, 2, ms, "b")
	if a.e.token != 0 {
		t.Fatalf("a kept token %d after a refused renewal", a.e.token)
	}
	a.e.step(ctx)
	wantLeading(t, 2, ms, "b")
}

func TestElectorStepsDownWhenRenewFails(t *testing.T) {
	st := openStore(t)
	ctx := context.Background()
	ca := &clock{t: t0}
	cb := &clock{t: t0.Add(ttl + time.Second)} // b's clock runs ahead: a's lease looks expired to it
	a := newMember(t, st, "a", ca.Now, ttl/3)
	b := newMember(t, st, "b", cb.Now, ttl/3)

	a.e.step(ctx)
	tokA, ok := a.e.Leading()
	if !ok {
		t.Fatal("a does not lead a free lease")
	}
	b.e.step(ctx)
	tokB, ok := b.e.Leading()
	if !ok || tokB != tokA+1 {
		t.Fatalf("b Leading = %d, %v; want token %d", tokB, ok, tokA+1)
	}

	// Until its next renewal a cannot know; the fence refuses its side effects meanwhile.
	err := st.InTx(ctx, func(tx pgx.Tx) error { return st.CheckFence(ctx, tx, "probes", tokA, ca.Now()) })
	if !errors.Is(err, store.ErrStaleToken) {
		t.Fatalf("CheckFence with a's stale token: %v, want ErrStaleToken", err)
	}
	if err := st.InTx(ctx, func(tx pgx.Tx) error { return st.CheckFence(ctx, tx, "probes", tokB, cb.Now()) }); err != nil {
		t.Fatalf("CheckFence with b's token: %v", err)
	}

	a.e.step(ctx)
	if tok, ok := a.e.Leading(); ok {
		t.Fatalf("a still leads with token %d after its renewal failed", tok)
	}
	if g := a.gauge(t); g != 0 {
		t.Fatalf("a responder_leader = %v after stepping down", g)
	}
}

func TestElectorRunHandsOverOnStop(t *testing.T) {
	st := openStore(t)
	c := &clock{t: t0} // never moves: only a release can hand the lease over
	ms := map[string]member{
		"a": newMember(t, st, "a", c.Now, 5*time.Millisecond),
		"b": newMember(t, st, "b", c.Now, 5*time.Millisecond),
	}
	cancels := map[string]context.CancelFunc{}
	dones := map[string]chan error{}
	for name, m := range ms {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		cancels[name], dones[name] = cancel, done
		go func() { done <- m.e.Run(ctx) }()
	}
	defer func() {
		for name, cancel := range cancels {
			cancel()
			if err := <-dones[name]; err != nil {
				t.Errorf("%s: Run: %v", name, err)
			}
		}
		cancels = nil
	}()

	// waitLeader polls until one member leads, failing if two ever lead at once.
	waitLeader := func() (string, int64) {
		t.Helper()
		var leader string
		var token int64
		testwait.Until(t, 10*time.Second, "a leader", func() bool {
			var leaders []string
			for name, m := range ms {
				if tok, ok := m.e.Leading(); ok {
					leaders, token = append(leaders, name), tok
				}
			}
			if len(leaders) > 1 {
				t.Fatalf("two leaders at once: %v", leaders)
			}
			if len(leaders) == 0 {
				return false
			}
			leader = leaders[0]
			return true
		})
		return leader, token
	}

	first, tok := waitLeader()
	if tok != 1 {
		t.Fatalf("first leader %s has token %d, want 1", first, tok)
	}
	cancels[first]()
	if err := <-dones[first]; err != nil {
		t.Fatalf("Run: %v", err)
	}
	delete(cancels, first)
	if _, ok := ms[first].e.Leading(); ok {
		t.Fatalf("%s still leads after Run returned", first)
	}
	stopped := ms[first]
	delete(ms, first)

	second, tok := waitLeader()
	if tok != 2 {
		t.Fatalf("second leader %s has token %d, want 2", second, tok)
	}
	if g := stopped.gauge(t); g != 0 {
		t.Fatalf("stopped leader responder_leader = %v", g)
	}
}

func TestNewOptions(t *testing.T) {
	st := openStore(t)
	for _, c := range []struct {
		name      string
		lease     string
		holder    string
		o         Options
		wantTTL   time.Duration
		wantRenew time.Duration
		wantErr   bool
	}{
		{name: "defaults", lease: "x", holder: "h", wantTTL: 15 * time.Second, wantRenew: 5 * time.Second},
		{name: "renew defaults to ttl/3", lease: "x", holder: "h", o: Options{TTL: 30 * time.Second}, wantTTL: 30 * time.Second, wantRenew: 10 * time.Second},
		{name: "renew not shorter than ttl", lease: "x", holder: "h", o: Options{TTL: time.Second, RenewEvery: time.Second}, wantErr: true},
		{name: "negative ttl", lease: "x", holder: "h", o: Options{TTL: -time.Second, RenewEvery: time.Millisecond}, wantErr: true},
		{name: "no name", holder: "h", wantErr: true},
		{name: "no holder", lease: "x", wantErr: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.o.Registerer = prometheus.NewRegistry()
			e, err := New(st, c.lease, c.holder, c.o)
			if (err != nil) != c.wantErr {
				t.Fatalf("New: %v, want error %v", err, c.wantErr)
			}
			if err == nil && (e.o.TTL != c.wantTTL || e.o.RenewEvery != c.wantRenew) {
				t.Fatalf("ttl %s renew %s, want %s %s", e.o.TTL, e.o.RenewEvery, c.wantTTL, c.wantRenew)
			}
		})
	}

	t.Run("several names share a registry", func(t *testing.T) {
		reg := prometheus.NewRegistry()
		for _, name := range []string{"probes", "retention"} {
			if _, err := New(st, name, "h", Options{Registerer: reg}); err != nil {
				t.Fatalf("New(%s): %v", name, err)
			}
		}
		if _, err := New(st, "probes", "h2", Options{Registerer: reg}); err == nil {
			t.Fatal("a second elector for the same name registered its metric twice")
		}
	})
}

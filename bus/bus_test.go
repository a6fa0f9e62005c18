package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// testKey is the signing key of the tests' buses on an external server.
var testKey = []byte("0123456789abcdef0123456789abcdef-test-key")

func open(t *testing.T, o bus.Options) (*bus.Bus, *prometheus.Registry) {
	t.Helper()
	if o.URL != "" && o.SigningKey == nil {
		o.SigningKey = testKey
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	if os.Getenv("BUS_DEBUG") != "" {
		o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	if o.NakDelay == 0 {
		o.NakDelay = 10 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, o)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return b, reg
}

// group returns n valid alerts whose identity depends on name.
func group(name string, n int) []alert.Alert {
	start := time.Date(2026, 11, 21, 10, 0, 0, 0, time.UTC)
	out := make([]alert.Alert, n)
	for i := range out {
		labels := map[string]string{"alertname": name, "pod": fmt.Sprintf("pod-%d", i), "namespace": "shop"}
		out[i] = alert.Alert{
			Name: name, Source: alert.SourceAlertmanager, Status: alert.StatusFiring,
			Labels: labels, Annotations: map[string]string{"summary": "s"},
			StartsAt: start, Fingerprint: alert.Fingerprint(labels), ReceivedAt: start.Add(time.Minute),
		}
	}
	return out
}

// recorder is a Processor that records what it saw; fail decides the result of each Process call.
type recorder struct {
	mu        sync.Mutex
	calls     int
	processed map[string][]bus.Message // by message id, one entry per successful processing
	dead      map[string]string        // msg id -> reason
	deadData  map[string][]byte
	fail      func(msgs []bus.Message) error
}

func newRecorder() *recorder {
	return &recorder{processed: map[string][]bus.Message{}, dead: map[string]string{}, deadData: map[string][]byte{}}
}

func (r *recorder) Process(_ context.Context, msgs []bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		if err := r.fail(msgs); err != nil {
			return err
		}
	}
	for _, m := range msgs {
		r.processed[m.ID] = append(r.processed[m.ID], m)
	}
	return nil
}

func (r *recorder) DeadLetter(_ context.Context, id string, data []byte, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead[id] = reason
	r.deadData[id] = data
	return nil
}

func (r *recorder) setFail(f func([]bus.Message) error) {
	r.mu.Lock()
	r.fail = f
	r.mu.Unlock()
}

func (r *recorder) count() (processed, dead int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ms := range r.processed {
		processed += len(ms)
	}
	return processed, len(r.dead)
}

// copies maps each alert's ID to the stored copies that carried it (message id and publish time:
// one stored message each), and counts the times each copy was processed. With group commit a
// message may carry several Publish calls, so exactly-once is checked per alert.
func (r *recorder) copies() map[string]map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]map[string]int{}
	for _, ms := range r.processed {
		for _, m := range ms {
			copyID := m.ID + "@" + m.Published.Format(time.RFC3339Nano)
			for _, a := range m.Alerts {
				if out[a.ID()] == nil {
					out[a.ID()] = map[string]int{}
				}
				out[a.ID()][copyID]++
			}
		}
	}
	return out
}

// alertCount is the number of alerts processed, counting repeats.
func (r *recorder) alertCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ms := range r.processed {
		for _, m := range ms {
			n += len(m.Alerts)
		}
	}
	return n
}

// consume runs b.Consume until the test ends.
func consume(t *testing.T, b *bus.Bus, p bus.Processor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Consume(ctx, p) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("consume: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("consume did not stop")
		}
	})
}

// settle bounds each wait of these tests for the bus to get somewhere.
const settle = 15 * time.Second

func publish(t *testing.T, b *bus.Bus, alerts []alert.Alert) {
	t.Helper()
	// A bound, not a speed check: a group of several MiB under -race on a loaded machine is slow.
	ctx, cancel := context.WithTimeout(context.Background(), settle)
	defer cancel()
	if err := b.Publish(ctx, alerts); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func TestRoundTripEmbedded(t *testing.T) {
	b, reg := open(t, bus.Options{StoreDir: t.TempDir()})
	if !strings.HasPrefix(b.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("client url %q", b.ClientURL())
	}
	groups := [][]alert.Alert{group("A", 1), group("B", 3), group("C", 10)}
	for _, g := range groups {
		publish(t, b, g)
	}
	testwait.Until(t, settle, "pending 3", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 3 })
	if got := metricValue(t, reg, "responder_bus_pending_messages"); got != 3 {
		t.Fatalf("pending gauge = %v, want 3", got)
	}
	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "3 messages processed", func() bool { n, _ := rec.count(); return n == 3 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for _, g := range groups {
		ms := rec.processed[alert.BatchID(g)]
		if len(ms) != 1 {
			t.Fatalf("group %s processed %d times", g[0].Name, len(ms))
		}
		if diff := cmp.Diff(g, ms[0].Alerts); diff != "" {
			t.Errorf("alerts changed on the bus (-sent +got):\n%s", diff)
		}
		if ms[0].Delivered != 1 || ms[0].Published.IsZero() {
			t.Errorf("delivered %d published %v", ms[0].Delivered, ms[0].Published)
		}
	}
	testwait.Until(t, settle, "pending 0", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 0 })
	if err := b.Ready(context.Background()); err != nil {
		t.Fatalf("ready: %v", err)
	}
}

// metricValue sums the series of one metric in reg.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var v float64
	for _, mf := range mfs {
		if mf.GetName() == name {
			for _, m := range mf.GetMetric() {
				v += m.GetGauge().GetValue() + m.GetCounter().GetValue()
			}
			return v
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestDedupe(t *testing.T) {
	srv := bustest.Start(t)
	b, _ := open(t, bus.Options{URL: srv.URL()})
	g := group("Dup", 4)
	publish(t, b, g)
	reversed := []alert.Alert{g[3], g[2], g[1], g[0]}
	publish(t, b, reversed) // same alerts in another order: same message id
	testwait.Until(t, settle, "pending 1", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 1 })
	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "processed", func() bool { n, _ := rec.count(); return n >= 1 })
	testwait.Until(t, settle, "acked", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 0 })
	if n, _ := rec.count(); n != 1 {
		t.Fatalf("processed %d deliveries, want 1", n)
	}
}

func TestStreamFull(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL(), MaxMsgs: 2, PurgeInterval: 20 * time.Millisecond})
	publish(t, b, group("One", 1))
	publish(t, b, group("Two", 1))
	err := b.Publish(context.Background(), group("Three", 1))
	if !errors.Is(err, bus.ErrStreamFull) || errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish to a full stream: %v; want ErrStreamFull", err)
	}
	testwait.Until(t, settle, "pending gauge 2", func() bool { return metricValue(t, reg, "responder_bus_pending_messages") == 2 })
	// Draining makes room again: acked messages are purged.
	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "drained", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 0 })
	testwait.Until(t, settle, "room after the purge", func() bool { return b.Publish(context.Background(), group("Three", 1)) == nil })
	if n, _ := rec.count(); n < 2 {
		t.Fatalf("processed %d, want the two acked messages", n)
	}
}

func TestServerDownAndBack(t *testing.T) {
	srv := bustest.Start(t)
	// A message the server delivered just as it went down is lost in flight and redelivered after
	// AckWait: keep that short, the test is about nothing being lost.
	b, _ := open(t, bus.Options{URL: srv.URL(), AckWait: 2 * time.Second})
	rec := newRecorder()
	consume(t, b, rec)
	publish(t, b, group("Before", 1))

	srv.Shutdown()
	// Before the client notices, a publish is bounded by its context.
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := b.Publish(ctx, group("During", 1)); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish with the server down: %v; want ErrUnavailable", err)
	}
	testwait.Until(t, settle, "not ready", func() bool { return b.Ready(context.Background()) != nil })
	// Once it has noticed, a publish fails at once.
	start := time.Now()
	err := b.Publish(context.Background(), group("During", 1))
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish with the server down: %v; want ErrUnavailable", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("publish took %s while disconnected", d)
	}

	srv.Restart()
	testwait.Until(t, settle, "publish after restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return b.Publish(ctx, group("After", 1)) == nil
	})
	testwait.Until(t, settle, "ready", func() bool { return b.Ready(context.Background()) == nil })
	testwait.Until(t, settle, "both processed", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.processed[alert.BatchID(group("Before", 1))]) == 1 && len(rec.processed[alert.BatchID(group("After", 1))]) == 1
	})
}

func TestTransientErrorRetriedNotLost(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL(), AckWait: time.Second})
	storeDown := errors.New("store down")
	rec := newRecorder()
	rec.fail = func([]bus.Message) error { return storeDown }
	consume(t, b, rec)
	g := group("Transient", 2)
	publish(t, b, g)

	testwait.Until(t, settle, "processing fails", func() bool {
		err := b.Processing()
		return err != nil && errors.Is(err, storeDown)
	})
	// Intake only needs the bus: a processing outage leaves it ready.
	if err := b.Ready(context.Background()); err != nil {
		t.Fatalf("ready while processing retries: %v", err)
	}
	// Keep failing past AckWait: InProgress must prevent a redelivery.
	testwait.Until(t, settle, "retries", func() bool { rec.mu.Lock(); defer rec.mu.Unlock(); return rec.calls >= 7 })
	rec.setFail(nil)
	testwait.Until(t, settle, "processed", func() bool { n, _ := rec.count(); return n == 1 })
	testwait.Until(t, settle, "processing recovered", func() bool { return b.Processing() == nil })
	rec.mu.Lock()
	m := rec.processed[alert.BatchID(g)][0]
	rec.mu.Unlock()
	if m.Delivered != 1 {
		t.Errorf("delivered %d times; the message should have stayed in progress", m.Delivered)
	}
	if got := metricValue(t, reg, "responder_bus_redeliveries_total"); got != 0 {
		t.Errorf("redeliveries = %v, want 0", got)
	}
	if n, _ := rec.count(); n != 1 {
		t.Errorf("processed %d, want 1", n)
	}
}

func TestPermanentErrorDeadLettersAfterN(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL(), MaxPermanentDeliveries: 3})
	rec := newRecorder()
	rec.fail = func(msgs []bus.Message) error {
		for _, m := range msgs {
			if m.Alerts[0].Name == "Poison" {
				return bus.Permanent(errors.New("cannot plan"))
			}
		}
		return nil
	}
	// Published before consuming so the poison message arrives in one batch with good ones.
	good := [][]alert.Alert{group("Good1", 1), group("Good2", 2)}
	poison := group("Poison", 1)
	publish(t, b, good[0])
	publish(t, b, poison)
	publish(t, b, good[1])
	consume(t, b, rec)

	testwait.Until(t, settle, "dead letter", func() bool { _, d := rec.count(); return d == 1 })
	testwait.Until(t, settle, "acked", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 0 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	id := alert.BatchID(poison)
	if reason := rec.dead[id]; !strings.Contains(reason, "cannot plan") {
		t.Errorf("dead letter reason %q", reason)
	}
	for _, g := range good {
		if n := len(rec.processed[alert.BatchID(g)]); n != 1 {
			t.Errorf("good message processed %d times, want 1", n)
		}
	}
	if len(rec.processed[id]) != 0 {
		t.Errorf("poison message processed")
	}
	if got := metricValue(t, reg, "responder_bus_terminated_total"); got != 1 {
		t.Errorf("terminated = %v, want 1", got)
	}
	if got := metricValue(t, reg, "responder_bus_redeliveries_total"); got != 2 {
		t.Errorf("redeliveries = %v, want 2 (3 deliveries)", got)
	}
}

func TestUndecodableIsDeadLettered(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL()})
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	for i, data := range []string{"{not json", "[]"} {
		msg := &nats.Msg{Subject: bus.DefaultSubject, Data: []byte(data), Header: nats.Header{"Nats-Msg-Id": {fmt.Sprintf("bad-%d", i)}}}
		bus.Sign(testKey, msg) // signed, so it gets as far as decoding
		if _, err := nc.RequestMsg(msg, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	publish(t, b, group("Fine", 1))
	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "dead letters", func() bool { _, d := rec.count(); return d == 2 })
	testwait.Until(t, settle, "processed", func() bool { n, _ := rec.count(); return n == 1 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if !strings.HasPrefix(rec.dead["bad-0"], "undecodable") || string(rec.deadData["bad-0"]) != "{not json" {
		t.Errorf("dead letter bad-0: %q %q", rec.dead["bad-0"], rec.deadData["bad-0"])
	}
	if got := metricValue(t, reg, "responder_bus_terminated_total"); got != 2 {
		t.Errorf("terminated = %v, want 2", got)
	}
}

func TestTwoReplicasShareWork(t *testing.T) {
	srv := bustest.Start(t)
	b1, _ := open(t, bus.Options{URL: srv.URL(), FetchBatch: 8})
	b2, _ := open(t, bus.Options{URL: srv.URL(), FetchBatch: 8})
	r1, r2 := newRecorder(), newRecorder()
	consume(t, b1, r1)
	consume(t, b2, r2)
	const n = 200
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			pub := b1
			if i%2 == 1 {
				pub = b2
			}
			if err := pub.Publish(context.Background(), group(fmt.Sprintf("A%d", i), 2)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Publish calls in flight together share messages (group commit): count alerts, 2 per call.
	testwait.Until(t, settle, "all processed", func() bool { return r1.alertCount()+r2.alertCount() >= 2*n })
	testwait.Until(t, settle, "all acked", func() bool { p, err := b1.Pending(context.Background()); return err == nil && p == 0 })
	a, c := r1.alertCount(), r2.alertCount()
	if a+c != 2*n {
		t.Fatalf("processed %d+%d alerts, want %d", a, c, 2*n)
	}
	seen := map[string]int{}
	for _, r := range []*recorder{r1, r2} {
		for id, cs := range r.copies() {
			for _, k := range cs {
				seen[id] += k
			}
		}
	}
	if len(seen) != 2*n {
		t.Fatalf("%d distinct alerts processed, want %d", len(seen), 2*n)
	}
	for id, k := range seen {
		if k != 1 {
			t.Errorf("alert %s processed %d times", id, k)
		}
	}
	r1.mu.Lock()
	r2.mu.Lock()
	defer r1.mu.Unlock()
	defer r2.mu.Unlock()
	for id, ms := range r1.processed {
		if len(ms) != 1 || len(r2.processed[id]) != 0 {
			t.Errorf("message %s processed %d times by replica 1 and %d by replica 2", id, len(ms), len(r2.processed[id]))
		}
	}
	t.Logf("replica 1 processed %d, replica 2 %d", a, c)
}

// TestOversizedGroupIsSplit: a group larger than the server's maximum payload is stored as several
// messages, none lost.
func TestOversizedGroupIsSplit(t *testing.T) {
	srv := bustest.Start(t)
	b, _ := open(t, bus.Options{URL: srv.URL()})
	g := group("Big", 3)
	for i := range g {
		g[i].Annotations = map[string]string{"description": strings.Repeat("x", 3<<20)}
	}
	publish(t, b, g)
	testwait.Until(t, settle, "pending 2", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 2 })
	rec := newRecorder()
	consume(t, b, rec)
	testwait.Until(t, settle, "processed", func() bool { n, _ := rec.count(); return n == 2 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	seen := map[string]bool{}
	for _, ms := range rec.processed {
		for _, a := range ms[0].Alerts {
			seen[a.ID()] = true
		}
	}
	if len(seen) != 3 {
		t.Fatalf("%d distinct alerts arrived, want 3", len(seen))
	}
}

// TestOversizedAlertRejectedAlone: in a group that must be split, one alert larger than the
// server's maximum payload by itself is refused alone (alert_too_large) and every other alert of the
// group is stored, whichever half it sorts into.
func TestOversizedAlertRejectedAlone(t *testing.T) {
	srv := bustest.Start(t, bustest.MaxPayload(64<<10))
	b, reg := open(t, bus.Options{URL: srv.URL()})
	g := group("Big", 9)
	for i := range g {
		g[i].Annotations = map[string]string{"description": strings.Repeat("d", 20<<10)} // 3 fit in one message
	}
	// Sorting by ID puts the giant somewhere in the middle: alerts on both sides of it must arrive.
	giant := 4
	g[giant].Annotations = map[string]string{"description": strings.Repeat("x", 100<<10)}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := b.Publish(ctx, g)
	var re *alert.RejectedError
	if !errors.As(err, &re) {
		t.Fatalf("publish: %v, want an *alert.RejectedError", err)
	}
	if len(re.Rejected) != 1 || re.Rejected[0].Alert.ID() != g[giant].ID() || re.Rejected[0].Err.Reason != alert.ReasonAlertTooLarge {
		t.Fatalf("rejected %+v, want only alert %d for %s", re.Rejected, giant, alert.ReasonAlertTooLarge)
	}
	if errors.Is(err, bus.ErrUnavailable) || errors.Is(err, bus.ErrStreamFull) {
		t.Fatalf("a refused alert is not a transient failure: %v", err)
	}
	if v := labelValue(t, reg, "responder_bus_publish_total", "rejected"); v != 1 {
		t.Fatalf("bus_publish_total{result=rejected} = %v, want 1", v)
	}
	rec := newRecorder()
	consume(t, b, rec)
	seen := func() map[string]bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		out := map[string]bool{}
		for _, ms := range rec.processed {
			for _, a := range ms[0].Alerts {
				out[a.ID()] = true
			}
		}
		return out
	}
	testwait.Until(t, settle, "the 8 other alerts", func() bool { return len(seen()) == 8 })
	for i, a := range g {
		if got := seen()[a.ID()]; got != (i != giant) {
			t.Errorf("alert %d stored = %v", i, got)
		}
	}
}

// labelValue is the value of the counter name whose one label has the value label.
func labelValue(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if mf.GetName() == name && len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == label {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("metric %s{%s} not registered", name, label)
	return 0
}

// TestFetchBoundedInBytes: a backlog of large messages is handed over in batches whose total size
// stays under FetchMaxBytes (not FetchBatch messages at once), and a bound below one message is
// raised to the server's maximum payload instead of stalling the consumer.
func TestFetchBoundedInBytes(t *testing.T) {
	for _, tc := range []struct {
		name     string
		maxBytes int
		bound    int // the largest batch allowed, in bytes of alerts
	}{
		{"bound of five messages", 200 << 10, 200 << 10},
		{"bound below one message", 1 << 10, 64<<10 + 4<<10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := bustest.Start(t, bustest.MaxPayload(64<<10))
			b, _ := open(t, bus.Options{URL: srv.URL(), FetchMaxBytes: tc.maxBytes})
			const msgs = 20
			for i := range msgs {
				g := group(fmt.Sprintf("Fetch%d", i), 1)
				g[0].Annotations = map[string]string{"description": strings.Repeat("d", 38<<10)}
				publish(t, b, g)
			}
			var mu sync.Mutex
			var sizes []int
			rec := newRecorder()
			rec.setFail(func(ms []bus.Message) error {
				n := 0
				for _, m := range ms {
					data, err := json.Marshal(m.Alerts)
					if err != nil {
						return bus.Permanent(err)
					}
					n += len(data)
				}
				mu.Lock()
				sizes = append(sizes, n)
				mu.Unlock()
				return nil
			})
			consume(t, b, rec)
			testwait.Until(t, settle, "every message", func() bool { n, _ := rec.count(); return n == msgs })
			mu.Lock()
			defer mu.Unlock()
			largest := slices.Max(sizes)
			if largest > tc.bound {
				t.Fatalf("a batch held %d bytes, more than %d (batches %v)", largest, tc.bound, sizes)
			}
			if tc.maxBytes > 64<<10 && len(sizes) == msgs {
				t.Fatalf("every message came alone (%d batches): the bound must not stop batching", len(sizes))
			}
			t.Logf("%d batches, largest %d bytes", len(sizes), largest)
		})
	}
}

// A fetch holding more alerts than MaxBatchAlerts is processed in chunks of at most that many (a
// message holding more goes alone), every alert once and every message acked.
func TestProcessCallsBoundedInAlerts(t *testing.T) {
	b, _ := open(t, bus.Options{StoreDir: t.TempDir(), MaxBatchAlerts: 25})
	sizes := []int{10, 10, 10, 40, 5, 10, 10}
	total := 0
	for i, n := range sizes {
		publish(t, b, group(fmt.Sprintf("Chunk%d", i), n))
		total += n
	}
	var mu sync.Mutex
	var calls []int
	rec := newRecorder()
	rec.setFail(func(ms []bus.Message) error {
		n := 0
		for _, m := range ms {
			n += len(m.Alerts)
		}
		mu.Lock()
		calls = append(calls, n)
		mu.Unlock()
		return nil
	})
	consume(t, b, rec)
	testwait.Until(t, settle, "every alert", func() bool { return rec.alertCount() == total })
	for id, cs := range rec.copies() {
		for c, n := range cs {
			if n != 1 {
				t.Fatalf("alert %s processed %d times from %s", id, n, c)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	for _, n := range calls {
		if n > 25 && n != 40 { // the message of 40 goes alone
			t.Fatalf("a Process call held %d alerts (calls %v), over MaxBatchAlerts 25", n, calls)
		}
	}
	testwait.Until(t, settle, "every message acked", func() bool {
		n, err := b.Pending(context.Background())
		return err == nil && n == 0
	})
	t.Logf("Process calls: %v", calls)
}

// TestPermanentFailureIsolatesTheFailingAlerts: a stored message combines the alerts of several
// requests (group commit). When it fails permanently, its alerts are processed one at a time:
// those that go through are processed, and the dead letter keeps only the one that fails, so a
// replay carries it alone.
func TestPermanentFailureIsolatesTheFailingAlerts(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL(), MaxPermanentDeliveries: 1})
	rec := newRecorder()
	rec.fail = func(msgs []bus.Message) error {
		for _, m := range msgs {
			for _, a := range m.Alerts {
				if a.Labels["pod"] == "pod-1" {
					return bus.Permanent(errors.New("cannot plan pod-1"))
				}
			}
		}
		return nil
	}
	g := group("Mixed", 3) // one message: pod-0, pod-1, pod-2
	publish(t, b, g)
	consume(t, b, rec)
	testwait.Until(t, settle, "dead letter", func() bool { _, d := rec.count(); return d == 1 })
	testwait.Until(t, settle, "acked", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 0 })
	rec.mu.Lock()
	defer rec.mu.Unlock()
	processed := map[string]int{}
	for _, ms := range rec.processed {
		for _, m := range ms {
			for _, a := range m.Alerts {
				processed[a.Labels["pod"]]++
			}
		}
	}
	if want := map[string]int{"pod-0": 1, "pod-2": 1}; !maps.Equal(processed, want) {
		t.Errorf("processed %v, want %v: the alerts that go through alone, once", processed, want)
	}
	id := alert.BatchID(g)
	if reason := rec.dead[id]; !strings.Contains(reason, "cannot plan pod-1") {
		t.Errorf("dead letter %q: reason %q", id, reason)
	}
	kept, err := alert.ParseListJSON(rec.deadData[id])
	if err != nil || len(kept) != 1 || kept[0].Labels["pod"] != "pod-1" {
		t.Errorf("the dead letter keeps %v (%v), want pod-1 alone", kept, err)
	}
	if got := metricValue(t, reg, "responder_bus_terminated_total"); got != 1 {
		t.Errorf("terminated = %v, want 1", got)
	}
}

// TestDeletedConsumerIsCreatedAgain: the durable consumer deleted by hand (nats consumer rm) while
// the bus consumes is created again, and what is published afterwards is processed; nothing is
// dead-lettered.
func TestDeletedConsumerIsCreatedAgain(t *testing.T) {
	srv := bustest.Start(t)
	b, _ := open(t, bus.Options{URL: srv.URL()})
	rec := newRecorder()
	consume(t, b, rec)
	publish(t, b, group("Before", 1))
	testwait.Until(t, settle, "the first alert processed", func() bool { n, _ := rec.count(); return n == 1 })

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := js.DeleteConsumer(ctx, bus.DefaultStream, bus.DefaultDurable); err != nil {
		t.Fatalf("delete the consumer: %v", err)
	}
	publish(t, b, group("After", 1))
	testwait.UntilDetail(t, 2*settle, "the alert published after the deletion processed", func() (bool, string) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, ms := range rec.processed {
			for _, m := range ms {
				if m.Alerts[0].Name == "After" {
					return true, ""
				}
			}
		}
		return false, fmt.Sprintf("%d messages processed", len(rec.processed))
	})
	if _, err := js.Consumer(ctx, bus.DefaultStream, bus.DefaultDurable); err != nil {
		t.Errorf("the consumer after the bus restored it: %v", err)
	}
	if _, d := rec.count(); d != 0 {
		t.Errorf("%d dead letters, want none", d)
	}
}

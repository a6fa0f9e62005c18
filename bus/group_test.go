package bus_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
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

// histogram is the sample count and sum of the histogram name in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) (count uint64, sum float64) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			h := mf.GetMetric()[0].GetHistogram()
			return h.GetSampleCount(), h.GetSampleSum()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0, 0
}

// publishAll calls Publish for every group at once (from one goroutine each) and returns their
// errors, in the order of groups.
func publishAll(ctx context.Context, b *bus.Bus, groups [][]alert.Alert) []error {
	errs := make([]error, len(groups))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i, g := range groups {
		wg.Go(func() {
			<-start
			errs[i] = b.Publish(ctx, g)
		})
	}
	close(start)
	wg.Wait()
	return errs
}

// drained waits until rec has processed at least alerts alerts and then until every stored message
// is acked. (The consumer's pending count can lag a publish: it is not enough alone.)
func drained(t *testing.T, b *bus.Bus, rec *recorder, alerts int) {
	t.Helper()
	testwait.Until(t, settle, fmt.Sprintf("%d alerts processed", alerts), func() bool { return rec.alertCount() >= alerts })
	testwait.Until(t, settle, "every message acked", func() bool {
		n, err := b.Pending(context.Background())
		return err == nil && n == 0
	})
}

// noFlushers waits until no goroutine of the bus's group commit is left.
func noFlushers(t *testing.T) {
	t.Helper()
	testwait.Until(t, settle, "no group commit goroutine left", func() bool {
		buf := make([]byte, 1<<20)
		return !strings.Contains(string(buf[:runtime.Stack(buf, true)]), "bus.(*committer)")
	})
}

// TestGroupCommitCombinesConcurrentPublishes: many concurrent Publish calls all return nil, share
// fewer messages than there are calls, and every alert is stored exactly once, unchanged; a
// message holding one call keeps the call's alert.BatchID.
func TestGroupCommitCombinesConcurrentPublishes(t *testing.T) {
	b, reg := open(t, bus.Options{StoreDir: t.TempDir()})
	const n = 300
	groups := make([][]alert.Alert, n)
	byName := map[string]int{}
	for i := range groups {
		groups[i] = group(fmt.Sprintf("C%03d", i), 1+i%3)
		byName[groups[i][0].Name] = i
	}
	for i, err := range publishAll(context.Background(), b, groups) {
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	msgs, calls := histogram(t, reg, "responder_bus_publish_batch_requests")
	if calls != n || msgs >= n {
		t.Fatalf("%d calls in %d messages; want %d calls in fewer messages", int(calls), msgs, n)
	}
	if v := labelValue(t, reg, "responder_bus_publish_total", "ok"); v != n {
		t.Fatalf("bus_publish_total{result=ok} = %v, want %d (one per call)", v, n)
	}
	rec := newRecorder()
	consume(t, b, rec)
	total := 0
	for _, g := range groups {
		total += len(g)
	}
	drained(t, b, rec, total)

	cs := rec.copies()
	for i, g := range groups {
		for _, a := range g {
			if c := cs[a.ID()]; len(c) != 1 || slices.Max(slices.Collect(maps.Values(c))) != 1 {
				t.Fatalf("alert %s of call %d: stored copies %v, want one processed once", a.ID(), i, c)
			}
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.processed) != int(msgs) {
		t.Fatalf("%d messages processed, the histogram counted %d", len(rec.processed), msgs)
	}
	for id, ms := range rec.processed {
		// The alerts of each call are in the message as they were sent, in order.
		got := map[int][]alert.Alert{}
		for _, a := range ms[0].Alerts {
			got[byName[a.Name]] = append(got[byName[a.Name]], a)
		}
		for i, as := range got {
			if diff := cmp.Diff(groups[i], as); diff != "" {
				t.Fatalf("call %d's alerts changed on the bus (-sent +got):\n%s", i, diff)
			}
			if len(got) == 1 && id != alert.BatchID(groups[i]) {
				t.Errorf("message %s holds call %d alone; want its batch id %s", id, i, alert.BatchID(groups[i]))
			}
		}
	}
	t.Logf("%d calls in %d messages", n, msgs)
}

// TestGroupCommitOneMessage: calls queued while a message is in flight go out as one message
// whose id depends only on the calls' alerts: the same calls combined again, in another order,
// are deduplicated. Identical calls (Alertmanager HA peers) are carried once, and alone they keep
// their batch id.
func TestGroupCommitOneMessage(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL(), SigningKey: testKey})
	groups := [][]alert.Alert{group("One", 1), group("Two", 2), group("Three", 3), group("Four", 1)}
	for round, order := range [][]int{{0, 1, 2, 3}, {3, 1, 0, 2}} {
		queued, release := bus.HoldPublishes(b)
		done := make(chan error, len(order))
		for _, i := range order {
			go func() { done <- b.Publish(context.Background(), groups[i]) }()
			testwait.Until(t, settle, "queued in order", func() bool { return queued() == slices.Index(order, i)+1 })
		}
		release()
		for range order {
			if err := <-done; err != nil {
				t.Fatalf("round %d: publish: %v", round, err)
			}
		}
		if msgs, _ := histogram(t, reg, "responder_bus_publish_batch_requests"); msgs != uint64(round+1) {
			t.Fatalf("round %d: %d messages published, want %d", round, msgs, round+1)
		}
	}
	testwait.Until(t, settle, "pending 1", func() bool { n, err := b.Pending(context.Background()); return err == nil && n == 1 })

	// Identical calls: carried once, alone under their batch id, with another call in one message.
	ha := group("HA", 2)
	for _, calls := range [][][]alert.Alert{{ha, ha}, {ha, ha, group("Other", 1)}} {
		queued, release := bus.HoldPublishes(b)
		done := make(chan error, len(calls))
		for _, g := range calls {
			go func() { done <- b.Publish(context.Background(), g) }()
		}
		testwait.Until(t, settle, "all queued", func() bool { return queued() == len(calls) })
		release()
		for range calls {
			if err := <-done; err != nil {
				t.Fatalf("publish: %v", err)
			}
		}
	}
	rec := newRecorder()
	consume(t, b, rec)
	drained(t, b, rec, 7+2+3)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if ms := rec.processed[alert.BatchID(ha)]; len(ms) != 1 || len(ms[0].Alerts) != len(ha) {
		t.Fatalf("the HA pair alone: %+v; want one message of its %d alerts under its batch id", ms, len(ha))
	}
	for id, ms := range rec.processed {
		if id != alert.BatchID(ha) && len(ms[0].Alerts) != 7 && len(ms[0].Alerts) != 3 {
			t.Errorf("message %s has %d alerts; want 7 (four calls) or 3 (the HA pair once and another)", id, len(ms[0].Alerts))
		}
	}
}

// TestGroupCommitErrorReachesEveryCall: when the message holding several calls is refused, each
// of them gets the error (here ErrStreamFull), and each is counted.
func TestGroupCommitErrorReachesEveryCall(t *testing.T) {
	srv := bustest.Start(t)
	b, reg := open(t, bus.Options{URL: srv.URL(), MaxMsgs: 1})
	publish(t, b, group("Fill", 1))
	queued, release := bus.HoldPublishes(b)
	const n = 10
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- b.Publish(context.Background(), group(fmt.Sprintf("Refused%d", i), 1)) }()
	}
	testwait.Until(t, settle, "all queued", func() bool { return queued() == n })
	release()
	for range n {
		if err := <-errs; !errors.Is(err, bus.ErrStreamFull) {
			t.Errorf("publish: %v; want ErrStreamFull", err)
		}
	}
	if v := labelValue(t, reg, "responder_bus_publish_total", "stream_full"); v != n {
		t.Fatalf("bus_publish_total{result=stream_full} = %v, want %d", v, n)
	}
	if msgs, calls := histogram(t, reg, "responder_bus_publish_batch_requests"); msgs != 2 || calls != n+1 {
		t.Fatalf("%d messages for %v calls; want the refused calls in one message", msgs, calls)
	}
}

// TestGroupCommitBoundedByPayload: a combined message stays under the server's maximum payload
// (calls that do not fit go in the next one), so every call is stored.
func TestGroupCommitBoundedByPayload(t *testing.T) {
	srv := bustest.Start(t, bustest.MaxPayload(64<<10))
	b, reg := open(t, bus.Options{URL: srv.URL(), SigningKey: testKey})
	const n = 12
	groups := make([][]alert.Alert, n)
	for i := range groups {
		groups[i] = group(fmt.Sprintf("Wide%d", i), 1)
		groups[i][0].Annotations = map[string]string{"description": strings.Repeat("w", 18<<10)} // 3 fit in one message
	}
	queued, release := bus.HoldPublishes(b)
	done := make(chan error, n)
	for _, g := range groups {
		go func() { done <- b.Publish(context.Background(), g) }()
	}
	testwait.Until(t, settle, "all queued", func() bool { return queued() == n })
	release()
	for range n {
		if err := <-done; err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
	if msgs, _ := histogram(t, reg, "responder_bus_publish_batch_requests"); msgs != n/3 {
		t.Fatalf("%d messages, want %d (3 calls each)", msgs, n/3)
	}
	rec := newRecorder()
	consume(t, b, rec)
	drained(t, b, rec, n)
	cs := rec.copies()
	for i, g := range groups {
		if len(cs[g[0].ID()]) != 1 {
			t.Errorf("call %d stored %d times", i, len(cs[g[0].ID()]))
		}
	}
}

// blackHole replaces the stream of b's subject with a subscriber that never answers: a publish
// then stays in flight until it is given up. It returns the number of messages received.
func blackHole(t *testing.T, srv *bustest.Server) func() int {
	t.Helper()
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if err := js.DeleteStream(context.Background(), bus.DefaultStream); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	got := 0
	if _, err := nc.Subscribe(bus.DefaultSubject, func(*nats.Msg) { mu.Lock(); got++; mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int { mu.Lock(); defer mu.Unlock(); return got }
}

// TestGroupCommitContext: a call whose context ends while it waits for a message is withdrawn
// (its alerts are not published); one whose context ends while its message is in flight returns
// the context's error, never nil; a disconnect fails the message in flight at once.
func TestGroupCommitContext(t *testing.T) {
	t.Run("queued call withdrawn", func(t *testing.T) {
		srv := bustest.Start(t)
		b, _ := open(t, bus.Options{URL: srv.URL(), SigningKey: testKey})
		queued, release := bus.HoldPublishes(b)
		ctx, cancel := context.WithCancel(context.Background())
		withdrawn, kept := make(chan error, 1), make(chan error, 1)
		go func() { withdrawn <- b.Publish(ctx, group("Withdrawn", 1)) }()
		go func() { kept <- b.Publish(context.Background(), group("Kept", 1)) }()
		testwait.Until(t, settle, "both queued", func() bool { return queued() == 2 })
		cancel()
		if err := <-withdrawn; !errors.Is(err, bus.ErrUnavailable) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled publish: %v; want ErrUnavailable and context.Canceled", err)
		}
		if queued() != 1 {
			t.Fatalf("%d calls queued after the cancel, want 1", queued())
		}
		release()
		if err := <-kept; err != nil {
			t.Fatal(err)
		}
		rec := newRecorder()
		consume(t, b, rec)
		drained(t, b, rec, 1)
		cs := rec.copies()
		if len(cs) != 1 || len(cs[group("Kept", 1)[0].ID()]) != 1 {
			t.Fatalf("stored %v; want only the kept call's alert", cs)
		}
	})
	t.Run("in flight", func(t *testing.T) {
		srv := bustest.Start(t)
		b, _ := open(t, bus.Options{URL: srv.URL(), SigningKey: testKey})
		received := blackHole(t, srv)
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := b.Publish(ctx, group("Lost", 1)); !errors.Is(err, bus.ErrUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("publish never acked: %v; want ErrUnavailable and context.DeadlineExceeded", err)
		}
		if received() != 1 {
			t.Fatalf("the black hole got %d messages, want 1 (the call's was in flight)", received())
		}
		// The next call waits behind that message; a disconnect fails both at once, without
		// waiting for the publish timeout (10 s).
		done := make(chan error, 1)
		go func() { done <- b.Publish(context.Background(), group("Waiting", 1)) }()
		testwait.Until(t, settle, "the next call queued", func() bool { return bus.Queued(b) == 1 })
		start := time.Now()
		srv.Shutdown()
		if err := <-done; !errors.Is(err, bus.ErrUnavailable) {
			t.Fatalf("publish across a disconnect: %v; want ErrUnavailable", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("a disconnect took %s to fail the publishes", d)
		}
	})
}

// TestCloseFailsPendingPublishes: Close answers every pending call. Publishes that cannot be
// acknowledged are failed (ErrUnavailable) when Close's context ends, and no goroutine is left.
func TestCloseFailsPendingPublishes(t *testing.T) {
	srv := bustest.Start(t)
	b, err := bus.Open(context.Background(), bus.Options{URL: srv.URL(), SigningKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	received := blackHole(t, srv)
	const n = 5
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- b.Publish(context.Background(), group(fmt.Sprintf("Never%d", i), 1)) }()
	}
	testwait.Until(t, settle, "a message in flight", func() bool { return received() == 1 })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := b.Close(ctx); err == nil {
		t.Fatal("close with publishes that never complete: nil; want an error")
	}
	for range n {
		if err := <-errs; !errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("publish pending at close: %v; want ErrUnavailable", err)
		}
	}
	if err := b.Publish(context.Background(), group("After", 1)); !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish after close: %v; want ErrUnavailable", err)
	}
	noFlushers(t)
}

// TestCloseFlushesPendingPublishes: calls pending when Close starts are published and answered;
// every call answered nil is stored.
func TestCloseFlushesPendingPublishes(t *testing.T) {
	srv := bustest.Start(t)
	b, err := bus.Open(context.Background(), bus.Options{URL: srv.URL(), SigningKey: testKey})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	groups := make([][]alert.Alert, n)
	for i := range groups {
		groups[i] = group(fmt.Sprintf("Closing%d", i), 1)
	}
	queued, release := bus.HoldPublishes(b)
	errs := make(chan error, n)
	for _, g := range groups {
		go func() { errs <- b.Publish(context.Background(), g) }()
	}
	testwait.Until(t, settle, "all queued", func() bool { return queued() == n })
	closed := make(chan error, 1)
	go func() { closed <- b.Close(context.Background()) }()
	testwait.Until(t, settle, "close started", func() bool { return bus.Closing(b) })
	release()
	if err := <-closed; err != nil {
		t.Fatalf("close: %v", err)
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("publish pending at close: %v; want it published", err)
		}
	}
	noFlushers(t)
	b2, _ := open(t, bus.Options{URL: srv.URL(), SigningKey: testKey})
	rec := newRecorder()
	consume(t, b2, rec)
	drained(t, b2, rec, n)
	cs := rec.copies()
	for i, g := range groups {
		if len(cs[g[0].ID()]) != 1 {
			t.Errorf("call %d stored %d times", i, len(cs[g[0].ID()]))
		}
	}
}

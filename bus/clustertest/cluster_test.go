package clustertest_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/clustertest"
	"github.com/responder-sre/responder/internal/testwait"
)

// mkAlert returns a valid firing alert whose identity depends on i.
func mkAlert(i int) alert.Alert {
	start := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	labels := map[string]string{"alertname": "ClusterTest", "pod": fmt.Sprintf("pod-%d", i), "namespace": "shop"}
	return alert.Alert{
		Name: "ClusterTest", Source: alert.SourceAlertmanager, Status: alert.StatusFiring,
		Labels: labels, StartsAt: start, Fingerprint: alert.Fingerprint(labels), ReceivedAt: start,
	}
}

// recorder is a Processor that records every alert it processed, by message id (a redelivered
// message is recorded once).
type recorder struct {
	mu   sync.Mutex
	byID map[string][]string // message id → alert ids
	// delivered is, per message id, the delivery count (Message.Delivered) of the delivery that
	// processed it first.
	delivered map[string]uint64
	dead      []string
}

func newRecorder() *recorder {
	return &recorder{byID: map[string][]string{}, delivered: map[string]uint64{}}
}

func (r *recorder) Process(_ context.Context, msgs []bus.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, m := range msgs {
		ids := make([]string, len(m.Alerts))
		for i, a := range m.Alerts {
			ids[i] = a.ID()
		}
		r.byID[m.ID] = ids
		if _, ok := r.delivered[m.ID]; !ok {
			r.delivered[m.ID] = m.Delivered
		}
	}
	return nil
}

// redelivered returns the message ids first processed on a delivery after the first one.
func (r *recorder) redelivered() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]uint64{}
	for id, d := range r.delivered {
		if d != 1 {
			out[id] = d
		}
	}
	return out
}

func (r *recorder) DeadLetter(_ context.Context, msgID string, _ []byte, reason string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dead = append(r.dead, msgID+": "+reason)
	return nil
}

// alerts returns how many distinct messages each alert id was processed in.
func (r *recorder) alerts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := map[string]int{}
	for _, ids := range r.byID {
		for _, id := range ids {
			n[id]++
		}
	}
	return n
}

// openBus opens a bus on c with stream replicas 3 and consumes into a recorder until the test ends.
// testSigningKey is the bus signing key the replicas of a test share.
var testSigningKey = []byte("0123456789abcdef0123456789abcdef-cluster-test-key")

func openBus(t *testing.T, c *clustertest.Cluster) (*bus.Bus, *recorder) {
	t.Helper()
	b, consume := openIdleBus(t, c)
	return b, consume()
}

// openIdleBus opens a bus on c like openBus; consume starts consuming into a recorder.
func openIdleBus(t *testing.T, c *clustertest.Cluster) (b *bus.Bus, consume func() *recorder) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{
		URL:        c.URL(),
		Replicas:   3,
		SigningKey: testSigningKey,
		MaxBytes:   256 << 20,
		AckWait:    5 * time.Second,
		// Keep every message, so the test can count what the stream stored.
		PurgeInterval: time.Hour,
		Logger:        slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		t.Fatalf("bus.Open on the cluster: %v", err)
	}
	return b, func() *recorder { return consumeInto(t, b) }
}

func consumeInto(t *testing.T, b *bus.Bus) *recorder {
	t.Helper()
	rec := newRecorder()
	cctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan struct{})
	go func() { defer close(done); _ = b.Consume(cctx, rec) }()
	t.Cleanup(func() {
		if t.Failed() { // where the bus's goroutines are, for a stuck consumer
			var sb strings.Builder
			_ = pprof.Lookup("goroutine").WriteTo(&sb, 1)
			for g := range strings.SplitSeq(sb.String(), "\n\n") {
				if strings.Contains(g, "responder/bus.") {
					t.Logf("bus goroutine:\n%s", g)
				}
			}
		}
		stop()
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := b.Close(ctx); err != nil {
			t.Errorf("bus.Close: %v", err)
		}
	})
	return rec
}

// stored reads every message of the stream and returns how many stored messages hold each alert
// id, and how many messages the stream holds.
func stored(t *testing.T, c *clustertest.Cluster) (map[string]int, int) {
	t.Helper()
	js, err := jetstream.New(c.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	total := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("get message %d: %v", seq, err)
		}
		as, err := alert.ParseListJSON(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		total++
		for _, a := range as {
			n[a.ID()]++
		}
	}
	return n, total
}

func TestClusterFormsAndReplicatesTheStream(t *testing.T) {
	c := clustertest.Start(t, 3)
	t.Logf("meta leader %s", c.MetaLeader(t).Name)
	b, rec := openBus(t, c)

	info := c.StreamInfo(t, bus.DefaultStream)
	if info.Config.Replicas != 3 || info.Config.Storage != jetstream.FileStorage {
		t.Fatalf("stream replicas %d storage %s, want 3 file", info.Config.Replicas, info.Config.Storage)
	}
	if info.Cluster == nil || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream cluster info %+v: want a leader and 2 replicas", info.Cluster)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	a := mkAlert(1)
	if err := b.Publish(ctx, []alert.Alert{a}); err != nil {
		t.Fatalf("publish: %v", err)
	}
	testwait.Until(t, 10*time.Second, "the alert consumed", func() bool { return rec.alerts()[a.ID()] == 1 })
	// Every replica holds the message: a follower reports no lag.
	testwait.UntilDetail(t, 10*time.Second, "both followers current", func() (bool, string) {
		info := c.StreamInfo(t, bus.DefaultStream)
		for _, r := range info.Cluster.Replicas {
			if !r.Current || r.Lag != 0 {
				return false, fmt.Sprintf("%+v", *r)
			}
		}
		return true, ""
	})
}

// The consumer has 3 replicas too: the server sends a delivery only once the consumer's group
// has agreed on it, but a pull's "409 Batch Completed" goes out at once, ahead of the messages.
// The two tests below are the regression tests of the bus losing those messages (they came back
// only after AckWait, and a backlog of full fetches never came back at all).

// TestIdleConsumerTakesEachMessageOnItsFirstDelivery: alerts published one at a time, 100 ms
// apart (a consumer mostly idle, waiting for the next message), are each processed on their first
// delivery. (Before the fix, 13 or 14 of 20 came only on their second, AckWait later.)
func TestIdleConsumerTakesEachMessageOnItsFirstDelivery(t *testing.T) {
	const n = 20
	c := clustertest.Start(t, 3)
	b, rec := openBus(t, c)
	tick := time.NewTicker(100 * time.Millisecond) // the pace of the load, not a wait for a result
	defer tick.Stop()
	for i := range n {
		<-tick.C
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		err := b.Publish(ctx, []alert.Alert{mkAlert(i)})
		cancel()
		if err != nil {
			t.Fatalf("publish %d: %v", i, err)
		}
	}
	testwait.UntilDetail(t, 30*time.Second, "every alert consumed", func() (bool, string) {
		got := len(rec.alerts())
		return got == n, fmt.Sprintf("%d of %d consumed; %s", got, n, clustertest.DescribeConsumer(c.ConsumerInfo(t, bus.DefaultStream, bus.DefaultDurable)))
	})
	if r := rec.redelivered(); len(r) > 0 {
		t.Errorf("%d of %d messages processed only on a redelivery (message id: delivery): %v; want each on its first", len(r), n, r)
	}
}

// TestBacklogIsConsumedInFullFetches: a backlog of several full fetches (FetchBatch messages
// each) published before the consumer starts is consumed, each message on its first delivery.
func TestBacklogIsConsumedInFullFetches(t *testing.T) {
	const total = 1000 // about 4 fetches of 256
	c := clustertest.Start(t, 3)
	b, consume := openIdleBus(t, c)
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for w := range 2 { // few publishers: about one alert per message
		wg.Go(func() {
			for i := w; i < total; i += 2 {
				ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
				if err := b.Publish(ctx, []alert.Alert{mkAlert(i)}); err != nil {
					errs <- fmt.Errorf("publish %d: %w", i, err)
				}
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	n, msgs := stored(t, c)
	if len(n) != total {
		t.Fatalf("stream holds %d distinct alerts in %d messages, want %d", len(n), msgs, total)
	}
	t.Logf("backlog: %d alerts in %d messages", total, msgs)
	rec := consume()
	testwait.UntilDetail(t, 60*time.Second, "the backlog consumed", func() (bool, string) {
		got := len(rec.alerts())
		return got == total, fmt.Sprintf("%d of %d alerts consumed; %s", got, total, clustertest.DescribeConsumer(c.ConsumerInfo(t, bus.DefaultStream, bus.DefaultDurable)))
	})
	if r := rec.redelivered(); len(r) > 0 {
		t.Errorf("%d messages processed only on a redelivery; want each on its first", len(r))
	}
}

// TestKillStreamLeaderMidPublish: SIGKILL of the stream leader while one publisher publishes
// alert after alert. A new leader is elected; publishes during the gap fail (never acked and
// then lost); every acked alert is stored and consumed exactly once; the failed ones, re-sent,
// are deduplicated against any copy the old leader stored before dying.
func TestKillStreamLeaderMidPublish(t *testing.T) {
	const total, killAt = 600, 150
	c := clustertest.Start(t, 3)
	b, rec := openBus(t, c)
	t.Cleanup(func() {
		if t.Failed() {
			dumpNodes(t, c)
		}
	})
	leader := c.StreamLeader(t, bus.DefaultStream)

	var acked atomic.Int32
	killed := make(chan struct{})
	kill := func() { // not on the test goroutine, so the publisher keeps publishing: no t.Fatal
		defer close(killed)
		if !leader.Kill() {
			t.Errorf("%s was not running", leader.Name)
		}
	}

	var failed []int
	var firstErr error
	start := time.Now()
	for i := range total {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		err := b.Publish(ctx, []alert.Alert{mkAlert(i)})
		cancel()
		if err != nil {
			if !errors.Is(err, bus.ErrUnavailable) && !errors.Is(err, bus.ErrStreamFull) {
				t.Fatalf("publish %d: %v: neither unavailable nor full", i, err)
			}
			if firstErr == nil {
				firstErr = err
			}
			failed = append(failed, i)
			continue
		}
		if acked.Add(1) == killAt {
			go kill()
		}
	}
	<-killed
	t.Logf("%d publishes in %s: %d acked, %d failed (first: %v)", total, time.Since(start).Round(time.Millisecond), acked.Load(), len(failed), firstErr)
	if len(failed) == 0 {
		t.Fatal("no publish failed: the leader was not killed mid-publish")
	}
	newLeader := c.StreamLeader(t, bus.DefaultStream, leader)
	t.Logf("stream leader %s killed; new leader %s", leader.Name, newLeader.Name)

	// The sender of a failed publish re-sends it (as Alertmanager retries a 503).
	for _, i := range failed {
		testwait.UntilDetail(t, 30*time.Second, fmt.Sprintf("re-send of alert %d acked", i), func() (bool, string) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if err := b.Publish(ctx, []alert.Alert{mkAlert(i)}); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	}

	want := make([]string, total)
	for i := range want {
		want[i] = mkAlert(i).ID()
	}
	testwait.UntilDetail(t, 30*time.Second, "every alert consumed", func() (bool, string) {
		got := rec.alerts()
		missing := 0
		for _, id := range want {
			if got[id] == 0 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d missing; %s", missing, total, clustertest.DescribeConsumer(c.ConsumerInfo(t, bus.DefaultStream, bus.DefaultDurable)))
	})
	got := rec.alerts()
	for _, id := range want {
		if got[id] != 1 {
			t.Errorf("alert %s consumed in %d messages, want 1", id, got[id])
		}
	}
	if len(got) != total {
		t.Errorf("consumed %d distinct alerts, want %d", len(got), total)
	}
	n, msgs := stored(t, c)
	for _, id := range want {
		if n[id] != 1 {
			t.Errorf("alert %s stored %d times, want once", id, n[id])
		}
	}
	if msgs != total {
		t.Errorf("stream holds %d messages, want %d", msgs, total)
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.dead) > 0 {
		t.Errorf("dead-lettered: %v", rec.dead)
	}
}

// TestCredentialsRequired: without a user and password (or with a wrong password), every node
// refuses the connection, and so does bus.Open.
func TestCredentialsRequired(t *testing.T) {
	c := clustertest.Start(t, 3)
	for _, nd := range c.Nodes {
		for name, url := range map[string]string{
			"no credentials": fmt.Sprintf("nats://127.0.0.1:%d", nd.ClientPort),
			"wrong password": fmt.Sprintf("nats://%s:wrong@127.0.0.1:%d", clustertest.User, nd.ClientPort),
		} {
			nc, err := nats.Connect(url, nats.MaxReconnects(0))
			if err == nil {
				nc.Close()
				t.Fatalf("%s, %s: connected", nd.Name, name)
			}
			if !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("%s, %s: %v, want an authorization violation", nd.Name, name, err)
			}
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if b, err := bus.Open(ctx, bus.Options{URL: c.URLWithoutCredentials(), Replicas: 3, SigningKey: testSigningKey}); err == nil {
		_ = b.Close(ctx)
		t.Fatal("bus.Open without credentials succeeded")
	} else if !errors.Is(err, bus.ErrUnavailable) {
		t.Errorf("bus.Open without credentials: %v, want ErrUnavailable", err)
	}
	// The same nodes with credentials: the refusal above was about them.
	nc := c.Connect(t)
	if !nc.IsConnected() {
		t.Fatal("not connected with credentials")
	}
}

// TestPausedFollower: a follower stopped with SIGSTOP does not stop the stream (2 of 3 is a
// quorum): publishes through another node keep being acked. After SIGCONT it catches up.
func TestPausedFollower(t *testing.T) {
	c := clustertest.Start(t, 3)
	b, rec := openBus(t, c)
	leader := c.StreamLeader(t, bus.DefaultStream)
	conn := c.ConnectedNode(t, "responder")
	var follower *clustertest.Node
	for _, nd := range c.Nodes {
		if nd != leader && nd != conn {
			follower = nd
			break
		}
	}
	t.Logf("stream leader %s, bus connected to %s, pausing %s", leader.Name, conn.Name, follower.Name)
	c.Pause(follower)
	const n = 50
	for i := range n {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		err := b.Publish(ctx, []alert.Alert{mkAlert(i)})
		cancel()
		if err != nil {
			t.Fatalf("publish %d with follower %s paused: %v", i, follower.Name, err)
		}
	}
	testwait.Until(t, 30*time.Second, "every alert consumed", func() bool { return len(rec.alerts()) == n })
	if r, detail := replica(t, c, follower.Name); r == nil || r.Lag == 0 {
		t.Fatalf("paused follower %s: %s: want it behind", follower.Name, detail)
	}
	c.Resume(follower)
	testwait.UntilDetail(t, 30*time.Second, follower.Name+" caught up", func() (bool, string) {
		r, detail := replica(t, c, follower.Name)
		return r != nil && r.Current && r.Lag == 0, detail
	})
}

// TestPausedConnectedNode: the node the bus is connected to is stopped with SIGSTOP for 20 s (its
// TCP connections stay open, nothing answers). The bus notices within a few pings, reconnects to
// another node and publishes are acked again while the node is still stopped; no publish is acked
// and then lost: every acked alert is consumed once, and the node catches up once resumed.
func TestPausedConnectedNode(t *testing.T) {
	const pauseAt, pause = 50, 20 * time.Second
	c := clustertest.Start(t, 3)
	b, rec := openBus(t, c)
	conn := c.ConnectedNode(t, "responder")
	var acked []string
	failed, ackedInPause := 0, 0
	var paused, firstAckInPause time.Time
	for i := 0; paused.IsZero() || time.Since(paused) < pause; i++ {
		if i == pauseAt {
			c.Pause(conn)
			paused = time.Now()
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		err := b.Publish(ctx, []alert.Alert{mkAlert(i)})
		cancel()
		if err != nil {
			if !errors.Is(err, bus.ErrUnavailable) {
				t.Fatalf("publish %d: %v: not ErrUnavailable", i, err)
			}
			failed++
			continue
		}
		acked = append(acked, mkAlert(i).ID())
		if !paused.IsZero() {
			if ackedInPause == 0 {
				firstAckInPause = time.Now()
			}
			ackedInPause++
		}
	}
	// Before resuming: the bus left the stopped node.
	now := c.ConnectedNode(t, "responder")
	c.Resume(conn)
	t.Logf("bus connected to %s, stopped for %s: %d acked (%d while it was stopped, the first after %s), %d failed; then connected to %s",
		conn.Name, pause, len(acked), ackedInPause, firstAckInPause.Sub(paused).Round(100*time.Millisecond), failed, now.Name)
	if ackedInPause == 0 {
		t.Fatalf("no publish acked in the %s %s was stopped: the bus did not fail over", pause, conn.Name)
	}
	if now == conn {
		t.Errorf("the bus is still connected to the stopped node %s", conn.Name)
	}
	testwait.UntilDetail(t, 30*time.Second, "every acked alert consumed", func() (bool, string) {
		got := rec.alerts()
		missing := 0
		for _, id := range acked {
			if got[id] != 1 {
				missing++
			}
		}
		return missing == 0, fmt.Sprintf("%d of %d acked alerts not consumed once", missing, len(acked))
	})
	testwait.UntilDetail(t, 30*time.Second, conn.Name+" caught up after the pause", func() (bool, string) {
		info := c.StreamInfo(t, bus.DefaultStream)
		if info.Cluster.Leader == conn.Name {
			return true, ""
		}
		r, detail := replica(t, c, conn.Name)
		return r != nil && r.Current && r.Lag == 0, detail
	})
}

// replica returns the stream's replica info for node name (nil if it is the leader or unknown),
// and a description for a wait's detail.
func replica(t *testing.T, c *clustertest.Cluster, name string) (*jetstream.PeerInfo, string) {
	t.Helper()
	info := c.StreamInfo(t, bus.DefaultStream)
	for _, r := range info.Cluster.Replicas {
		if r.Name == name {
			return r, fmt.Sprintf("%+v", *r)
		}
	}
	return nil, fmt.Sprintf("%s is not a replica (leader %s)", name, info.Cluster.Leader)
}

// TestRestartedNodes: a follower killed while alerts are published catches up after Restart; the
// stream leader killed and restarted keeps the duplicate window: an alert acked before is, re-sent,
// stored once.
func TestRestartedNodes(t *testing.T) {
	c := clustertest.Start(t, 3)
	b, rec := openBus(t, c)
	publish := func(i int) {
		t.Helper()
		testwait.UntilDetail(t, 30*time.Second, fmt.Sprintf("publish %d acked", i), func() (bool, string) {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if err := b.Publish(ctx, []alert.Alert{mkAlert(i)}); err != nil {
				return false, err.Error()
			}
			return true, ""
		})
	}

	leader := c.StreamLeader(t, bus.DefaultStream)
	var follower *clustertest.Node
	for _, nd := range c.Nodes {
		if nd != leader {
			follower = nd
			break
		}
	}
	c.Kill(follower)
	const n = 20
	for i := range n {
		publish(i)
	}
	c.Restart(follower)
	testwait.UntilDetail(t, 30*time.Second, follower.Name+" caught up after its restart", func() (bool, string) {
		r, detail := replica(t, c, follower.Name)
		return r != nil && r.Current && r.Lag == 0, detail
	})

	// Restart the stream leader; afterwards re-send every alert.
	leader = c.StreamLeader(t, bus.DefaultStream)
	c.Kill(leader)
	c.Restart(leader)
	for i := range n {
		publish(i)
	}
	testwait.Until(t, 30*time.Second, "every alert consumed", func() bool { return len(rec.alerts()) == n })
	got, msgs := stored(t, c)
	if msgs != n || len(got) != n {
		t.Fatalf("stream holds %d messages with %d distinct alerts, want %d: the re-sends were not deduplicated", msgs, len(got), n)
	}
	for id, k := range rec.alerts() {
		if k != 1 {
			t.Errorf("alert %s consumed in %d messages, want 1", id, k)
		}
	}
}

// dumpNodes logs each running node's view of the stream and the consumer (its /jsz), for a
// failing test.
func dumpNodes(t *testing.T, c *clustertest.Cluster) {
	for _, nd := range c.Nodes {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/jsz?accounts=true&streams=true&consumers=true&raft=true", nd.HTTPPort))
		if err != nil {
			t.Logf("%s: %v", nd.Name, err)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Logf("%s /jsz:\n%s", nd.Name, b)
	}
}

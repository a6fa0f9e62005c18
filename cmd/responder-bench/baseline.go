package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// baselineSet is the raw JetStream baseline of one body shape (alerts per publish): the rates of
// its runs, spread over the bench run.
type baselineSet struct {
	perPublish int
	bodies     [][]byte
	rates      []float64 // msgs/s, one per run
}

// median is the median rate in msgs/s (0 before any run).
func (b *baselineSet) median() float64 {
	if len(b.rates) == 0 {
		return 0
	}
	s := slices.Clone(b.rates)
	slices.Sort(s)
	return s[len(s)/2]
}

// alertsPerSecond is the median in alerts/s.
func (b *baselineSet) alertsPerSecond() float64 { return b.median() * float64(b.perPublish) }

// run measures the baseline once more in a fresh embedded server under dir.
func (b *baselineSet) run(ctx context.Context, dir string, inflight int) error {
	r, err := baseline(ctx, filepath.Join(dir, fmt.Sprintf("baseline-%d-%d", b.perPublish, len(b.rates))), b.bodies, inflight)
	if err != nil {
		return fmt.Errorf("baseline (%d per publish): %w", b.perPublish, err)
	}
	b.rates = append(b.rates, r)
	fmt.Printf("baseline: raw JetStream async publish, %d alert(s) per publish, %d in flight, fsync always: %.0f msgs/s (run %d)\n",
		b.perPublish, inflight, r, len(b.rates))
	return nil
}

// baseline publishes bodies to a fresh embedded JetStream (file storage, fsync always) with up to
// inflight async publishes pending and returns messages/s.
func baseline(ctx context.Context, dir string, bodies [][]byte, inflight int) (float64, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, JetStream: true,
		StoreDir: dir, SyncAlways: true, MaxPayload: 8 << 20})
	if err != nil {
		return 0, err
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		return 0, errors.New("baseline server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inflight))
	if err != nil {
		return 0, err
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"baseline"}, Storage: jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, Duplicates: 20 * time.Minute}); err != nil {
		return 0, err
	}
	start := time.Now()
	for i, b := range bodies {
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if _, err := js.PublishAsync("baseline", b, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(5 * time.Minute):
		return 0, errors.New("baseline publishes did not complete")
	}
	return float64(len(bodies)) / time.Since(start).Seconds(), nil
}

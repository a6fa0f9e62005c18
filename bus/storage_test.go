package bus_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// refusalBound is not a speed claim: a refused publish must not hang (it used to wait for the
// 10 s publish timeout, because the server never answers a message it failed to store).
const refusalBound = 2 * time.Second

// TestFullDiskRefusesAtOnceAndRecovers fills the real file system under the embedded JetStream
// (a tmpfs, so the file store meets a real ENOSPC) while groups arrive, then frees it.
//
// A purge that meets ENOSPC deadlocks the stream in nats-server v2.15.2/3 (see errWedged in
// embedded.go). The bus purges only with restartMinFree bytes free, so that takes a disk filling
// within a millisecond of the check, as this test's filler can (it ran 10 of 10 times without);
// it would then fail naming the wedge, not hang (TestWedgedServerFailsFastAndAsksForARestart).
func TestFullDiskRefusesAtOnceAndRecovers(t *testing.T) {
	disk := bustest.SmallDisk(t, 48<<20)
	storeDir := filepath.Join(disk, "jetstream")
	b, reg := open(t, bus.Options{StoreDir: storeDir, MaxBytes: 16 << 20, PurgeInterval: 50 * time.Millisecond})
	rec := newRecorder()
	consume(t, b, rec)

	const total = 2500
	groups := make([][]alert.Alert, total)
	for i := range groups {
		groups[i] = group(fmt.Sprintf("G%04d", i), 1)
	}
	var (
		next, accepted atomic.Int64
		mu             sync.Mutex
		refused        []int
		slow           []string
	)
	filler := make(chan *bustest.Filler, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < total; i = int(next.Add(1)) - 1 {
				if i == 300 {
					filler <- bustest.Fill(t, disk) // the disk fills while groups keep arriving
				}
				start := time.Now()
				// No deadline, like the webhook's request context: the bus bounds the wait itself.
				err := b.Publish(context.Background(), groups[i])
				took := time.Since(start)
				if err == nil {
					accepted.Add(1)
					continue
				}
				mu.Lock()
				refused = append(refused, i)
				if took > refusalBound {
					slow = append(slow, fmt.Sprintf("group %d refused after %s: %v", i, took.Round(time.Millisecond), err))
					next.Store(total) // a hang: stop here rather than hang for every group left
				}
				mu.Unlock()
				if !errors.Is(err, bus.ErrUnavailable) {
					t.Errorf("group %d: %v; want ErrUnavailable", i, err)
				}
			}
		}()
	}
	f := <-filler
	wg.Wait()
	select {
	case <-f.Full():
	default:
		t.Fatal("the filler never met ENOSPC")
	}
	t.Logf("accepted %d, refused %d while the disk filled", accepted.Load(), len(refused))
	if len(slow) > 0 {
		t.Errorf("%d refusals took longer than %s, e.g. %s", len(slow), refusalBound, slow[0])
	}
	if len(refused) == 0 {
		t.Fatal("nothing was refused: the disk never filled under the stream")
	}

	// While the disk is full: refused at once, not ready (naming the storage), metrics exported.
	start := time.Now()
	if err := b.Publish(context.Background(), group("WhileFull", 1)); err == nil {
		t.Fatal("a publish on a full disk succeeded")
	} else if took := time.Since(start); took > refusalBound {
		t.Errorf("a publish on a full disk was refused after %s", took)
	}
	err := b.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "storage") || !strings.Contains(err.Error(), storeDir) {
		t.Fatalf("ready on a full disk: %v; want an error naming the storage %s", err, storeDir)
	}
	if free := metricValue(t, reg, "responder_bus_storage_free_bytes"); free > 1<<20 {
		t.Errorf("responder_bus_storage_free_bytes = %v on a full disk", free)
	}
	if size := metricValue(t, reg, "responder_bus_storage_size_bytes"); size < 40<<20 || size > 48<<20 {
		t.Errorf("responder_bus_storage_size_bytes = %v, want the 48 MiB tmpfs", size)
	}
	if n := metricValue(t, reg, "responder_bus_store_bytes"); n <= 0 {
		t.Errorf("responder_bus_store_bytes = %v", n)
	}

	// Space comes back: the bus recovers by itself within a bounded time.
	if err := f.Free(); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	testwait.Until(t, 30*time.Second, "publishes accepted again after space came back", func() bool {
		return b.Publish(context.Background(), group("AfterFree", 1)) == nil
	})
	testwait.Until(t, 30*time.Second, "ready again", func() bool { return b.Ready(context.Background()) == nil })
	t.Logf("recovered %s after space came back", time.Since(freed).Round(time.Millisecond))
	if n := metricValue(t, reg, "responder_bus_storage_restarts_total"); n < 1 {
		t.Errorf("responder_bus_storage_restarts_total = %v after a recovery", n)
	}

	// The senders retry what was refused (Alertmanager retries 5xx).
	for _, i := range refused {
		testwait.Until(t, 30*time.Second, fmt.Sprintf("group %d accepted on retry", i), func() bool {
			return b.Publish(context.Background(), groups[i]) == nil
		})
	}
	// Every group is stored exactly once: one stored copy (one message id and publish timestamp)
	// per alert, each group being one alert. (A redelivery of the same stored copy is the
	// at-least-once contract; Process is idempotent. Concurrent groups may share a message.)
	testwait.Until(t, 60*time.Second, "every group processed", func() bool {
		cs := rec.copies()
		for _, g := range groups {
			if len(cs[g[0].ID()]) == 0 {
				return false
			}
		}
		return true
	})
	cs := rec.copies()
	for i, g := range groups {
		if n := len(cs[g[0].ID()]); n != 1 {
			t.Errorf("group %d stored %d times", i, n)
		}
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.dead) > 0 {
		t.Errorf("dead letters: %v", rec.dead)
	}
}

// TestWedgedServerFailsFastAndAsksForARestart: when the embedded server stops answering its own
// health check (a nats-server deadlock on a full disk, see errWedged), publishes are refused
// within a bound, Ready names the storage, no in-place restart is tried (it would hang), Live
// fails once the wedge lasts, and Close returns instead of waiting on the server.
func TestWedgedServerFailsFastAndAsksForARestart(t *testing.T) {
	storeDir := t.TempDir()
	reg := prometheus.NewRegistry()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, bus.Options{StoreDir: storeDir, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Publish(ctx, group("BeforeWedge", 1)); err != nil {
		t.Fatalf("publish before the wedge: %v", err)
	}
	shutdown, unwedge := bus.Wedge(b, 200*time.Millisecond, time.Second)
	t.Cleanup(func() { unwedge(); shutdown() })

	testwait.Until(t, 10*time.Second, "ready fails naming the storage", func() bool {
		err := b.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), storeDir) && strings.Contains(err.Error(), "wedged")
	})
	start := time.Now()
	err = b.Publish(context.Background(), group("WhileWedged", 1))
	if !errors.Is(err, bus.ErrUnavailable) || !errors.Is(err, bus.ErrStorage) {
		t.Errorf("publish while wedged: %v; want ErrUnavailable and ErrStorage", err)
	}
	if took := time.Since(start); took > refusalBound {
		t.Errorf("publish while wedged refused after %s", took)
	}
	testwait.Until(t, 10*time.Second, "live fails after the wedge lasted", func() bool {
		err := b.Live()
		return err != nil && strings.Contains(err.Error(), "restart")
	})
	if n := metricValue(t, reg, "responder_bus_storage_restarts_total"); n != 0 {
		t.Errorf("responder_bus_storage_restarts_total = %v: a wedged server was restarted in place", n)
	}

	closed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		closed <- b.Close(ctx)
	}()
	select {
	case err := <-closed:
		if err == nil || !strings.Contains(err.Error(), "wedged") {
			t.Errorf("close of a wedged bus: %v; want an error saying the server is wedged", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close hung on a wedged embedded server")
	}
}

package app_test

import (
	"fmt"
	"net/http"
	"path"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// TestFullDiskWebhook fills the real file system under --storage.path (a tmpfs: the embedded
// JetStream meets a real ENOSPC) while Alertmanager posts, then frees it: every alert answered 200
// is acted on exactly once, refusals are quick 503s, /readyz names the storage while the disk is
// full, and intake comes back by itself.
func TestFullDiskWebhook(t *testing.T) {
	disk := bustest.SmallDisk(t, 48<<20)
	f := startApp(t, fixtureOpts{storage: disk, extra: "bus: {max_bytes: 16MiB}\n"})
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	const total = 400
	body := func(i int) []byte { return payload("firing", starts, fmt.Sprintf("p-%03d", i)) }

	var (
		next     atomic.Int64
		mu       sync.Mutex
		accepted = map[string]bool{}
		refused  []int
		problems []string
	)
	filler := make(chan *bustest.Filler, 1)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1)) - 1; i < total; i = int(next.Add(1)) - 1 {
				if i == 150 {
					filler <- bustest.Fill(t, disk)
				}
				start := time.Now()
				code := f.post(body(i))
				took := time.Since(start)
				mu.Lock()
				switch {
				case code == http.StatusOK:
					accepted[fmt.Sprintf("p-%03d", i)] = true
				case code != http.StatusServiceUnavailable:
					problems = append(problems, fmt.Sprintf("alert %d: %d, want 200 or 503", i, code))
				case took > refusalBound:
					problems = append(problems, fmt.Sprintf("alert %d: 503 after %s", i, took.Round(time.Millisecond)))
					next.Store(total) // a hang: stop rather than hang for every alert left
					fallthrough
				default:
					refused = append(refused, i)
				}
				mu.Unlock()
			}
		}()
	}
	fl := <-filler
	wg.Wait()
	t.Logf("%d accepted, %d refused while the disk filled", len(accepted), len(refused))
	for _, p := range problems {
		t.Error(p)
	}
	if len(refused) == 0 {
		t.Fatal("nothing was refused: the disk never filled under the stream")
	}

	// While the disk is full.
	start := time.Now()
	if code, b := f.do(http.MethodPost, "/webhook/alertmanager", hookToken, payload("firing", starts, "while-full")); code != 503 || time.Since(start) > refusalBound {
		t.Errorf("post on a full disk: %d after %s: %s", code, time.Since(start), b)
	}
	testwait.Until(t, 10*time.Second, "/readyz to name the storage", func() bool {
		code, b := f.do(http.MethodGet, "/readyz", "", nil)
		return code == 503 && strings.Contains(string(b), "storage")
	})
	if code, _ := f.do(http.MethodGet, "/livez", "", nil); code != 200 {
		t.Errorf("/livez = %d on a full disk: the process recovers by itself, no restart needed", code)
	}
	_, metrics := f.do(http.MethodGet, "/metrics", "", nil)
	for _, name := range []string{"responder_bus_store_bytes", "responder_bus_storage_free_bytes", "responder_bus_storage_size_bytes", "responder_bus_storage_restarts_total"} {
		if !strings.Contains(string(metrics), "\n"+name+" ") {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	// Space comes back: intake and readiness recover by themselves.
	if err := fl.Free(); err != nil {
		t.Fatal(err)
	}
	freed := time.Now()
	testwait.Until(t, 30*time.Second, "the webhook to answer 200 again", func() bool { return f.post(body(refused[0])) == 200 })
	testwait.Until(t, 30*time.Second, "/readyz ok again", func() bool { c, _ := f.do(http.MethodGet, "/readyz", "", nil); return c == 200 })
	t.Logf("intake recovered %s after space came back", time.Since(freed).Round(time.Millisecond))
	for _, i := range refused { // Alertmanager retries what was refused
		testwait.Until(t, 30*time.Second, fmt.Sprintf("alert %d accepted on retry", i), func() bool { return f.post(body(i)) == 200 })
		accepted[fmt.Sprintf("p-%03d", i)] = true
	}

	// Every accepted alert acted on exactly once.
	testwait.Until(t, 120*time.Second, "an action per accepted alert", func() bool { return len(f.sink.Calls()) >= len(accepted) })
	calls := map[string]int{}
	for _, c := range f.sink.Calls() {
		calls[path.Base(c.Path)]++
	}
	for pod := range accepted {
		if calls[pod] != 1 {
			t.Errorf("%s acted on %d times, want once", pod, calls[pod])
		}
	}
	if len(calls) != len(accepted) {
		t.Errorf("actions for %d pods, %d alerts accepted", len(calls), len(accepted))
	}
}

const refusalBound = 5 * time.Second // a hang detector (a publish gives up after 10s), not a speed claim

package bus_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/internal/childproc"
	"github.com/responder-sre/responder/internal/testwait"
)

// killChildEnv makes the test binary, run as TestKillDuringGroupCommitLosesNothingAcked, the
// child: it opens the bus on the store directory the variable names and serves publishes over
// HTTP until it is killed.
const killChildEnv = "BUS_KILL_CHILD_STORE"

// TestKillDuringGroupCommitLosesNothingAcked: a process serving group-committed publishes is
// killed with SIGKILL under load, between and during batches; once its store is opened again,
// every call it answered (acknowledged) is in the stream. Calls in flight at the kill may or may
// not be stored: their senders got no answer and retry.
func TestKillDuringGroupCommitLosesNothingAcked(t *testing.T) {
	if dir := os.Getenv(killChildEnv); dir != "" {
		serveKillChild(t, dir)
		return
	}
	dir := t.TempDir()
	var next atomic.Int64
	var acked []string // names of the calls answered 204
	// Three rounds on the same store: each child is killed mid-load, the next one reopens what
	// the killed one left.
	for range 3 {
		acked = append(acked, killRound(t, dir, &next)...)
	}
	// Open the store again: everything acknowledged is there.
	b, _ := open(t, bus.Options{StoreDir: dir})
	rec := newRecorder()
	consume(t, b, rec)
	missing := func() []string {
		cs := rec.copies()
		var out []string
		for _, name := range acked {
			size := 1 + int(mustIndex(t, name)%3)
			for _, a := range group(name, size) {
				if len(cs[a.ID()]) == 0 {
					out = append(out, name)
					break
				}
			}
		}
		return out
	}
	testwait.UntilDetail(t, settle, "every acknowledged call in the stream", func() (bool, string) {
		m := missing()
		return len(m) == 0, fmt.Sprintf("%d of %d acknowledged calls missing, e.g. %v", len(m), len(acked), m[:min(len(m), 5)])
	})
	// The test is about group commit: some message carried several calls.
	rec.mu.Lock()
	combined := 0
	for _, ms := range rec.processed {
		names := map[string]bool{}
		for _, a := range ms[0].Alerts {
			names[a.Name] = true
		}
		if len(names) > 1 {
			combined++
		}
	}
	messages := len(rec.processed)
	rec.mu.Unlock()
	if combined == 0 {
		t.Fatalf("no message carried more than one call (%d messages): group commit was not exercised", messages)
	}
	t.Logf("%d calls acknowledged before the kill, %d messages in the stream, %d of them combined", len(acked), messages, combined)
}

// killRound starts a child on dir, sends it calls from many clients, kills it with SIGKILL as soon
// as a client got the answer to the 200th call of the round (calls keep arriving meanwhile), and
// returns the names of the calls it answered.
func killRound(t *testing.T, dir string, next *atomic.Int64) []string {
	t.Helper()
	const clients = 32
	child, addr := startKillChild(t, dir)
	var (
		answered atomic.Int64
		killed   atomic.Bool
		mu       sync.Mutex
		acked    []string
	)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}, Timeout: 30 * time.Second}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for !killed.Load() {
				i := next.Add(1)
				name := fmt.Sprintf("K%05d", i)
				resp, err := client.Post(fmt.Sprintf("http://%s/publish?name=%s&size=%d", addr, name, 1+i%3), "text/plain", nil)
				if err != nil {
					if !killed.Load() {
						t.Errorf("call %s: %v", name, err)
					}
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusNoContent {
					t.Errorf("call %s: status %d", name, resp.StatusCode)
					return
				}
				mu.Lock()
				acked = append(acked, name)
				mu.Unlock()
				if answered.Add(1) == 200 {
					killed.Store(true)
					child.Kill()
				}
			}
		})
	}
	wg.Wait()
	if !killed.Load() {
		t.Fatal("the clients stopped before the kill")
	}
	return acked
}

func mustIndex(t *testing.T, name string) int64 {
	t.Helper()
	i, err := strconv.ParseInt(strings.TrimPrefix(name, "K"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return i
}

// startKillChild runs this test binary as the child on dir and returns it with its HTTP address.
func startKillChild(t *testing.T, dir string) (*childproc.Process, string) {
	t.Helper()
	// A pipe of our own: Wait would close a cmd.StdoutPipe once the child exits.
	stdout, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdout.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillDuringGroupCommitLosesNothingAcked$", "-test.count=1")
	cmd.Env = append(os.Environ(), killChildEnv+"="+dir)
	cmd.Stdout = w
	cmd.Stderr = os.Stderr
	child, err := childproc.Start(cmd)
	w.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(child.Kill)
	lines := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if addr, ok := strings.CutPrefix(sc.Text(), "addr "); ok {
				lines <- addr
				return
			}
		}
		close(lines)
	}()
	select {
	case addr, ok := <-lines:
		if !ok {
			t.Fatal("the child exited before serving")
		}
		return child, addr
	case <-time.After(time.Minute):
		t.Fatal("the child did not start serving within a minute")
	}
	return nil, ""
}

// serveKillChild is the child: it publishes group(name, size) for each POST /publish and answers
// 204 once Publish returned nil, 503 otherwise. It never returns: the parent kills it.
func serveKillChild(t *testing.T, dir string) {
	b, err := bus.Open(context.Background(), bus.Options{StoreDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size, err := strconv.Atoi(r.URL.Query().Get("size"))
		name := r.URL.Query().Get("name")
		if err != nil || !slices.Contains([]int{1, 2, 3}, size) || name == "" {
			http.Error(w, "bad call", http.StatusBadRequest)
			return
		}
		if err := b.Publish(r.Context(), group(name, size)); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	fmt.Printf("addr %s\n", ln.Addr())
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	_ = srv.Serve(ln)
	select {}
}

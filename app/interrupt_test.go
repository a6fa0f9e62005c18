package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// TestPauseThroughTheAPIInterruptsRunningActions: a disruptive http.request is in flight (the
// downstream holds it) when POST /api/v1/pause commits: its request is cancelled within about a
// second, the action ends unknown/paused and escalates; a notification in flight at the same time
// completes.
func TestPauseThroughTheAPIInterruptsRunningActions(t *testing.T) {
	var mu sync.Mutex
	cancelled := map[string]time.Time{}
	started := make(chan string, 4)
	releasePage := make(chan struct{})
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.calls = append(s.calls, sinkCall{Path: r.URL.Path})
		s.mu.Unlock()
		switch {
		case strings.HasPrefix(r.URL.Path, "/hooks/restart/"), r.URL.Path == "/hooks/page/web-1":
			started <- r.URL.Path
			hold := releasePage
			if strings.HasPrefix(r.URL.Path, "/hooks/restart/") {
				hold = nil // only a cancellation ends it
			}
			select {
			case <-r.Context().Done():
				mu.Lock()
				cancelled[r.URL.Path] = time.Now()
				mu.Unlock()
				return
			case <-hold:
			}
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	f := startApp(t, fixtureOpts{sink: s, rules: func(s *sink) string {
		return fmt.Sprintf(`
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping" && alert.labels.pod == "web-1"
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/hooks/restart/{{ alert.labels.pod }}"}
    escalate:
      - handler: http.request
        params: {url: "http://%[1]s/hooks/page/escalated", class: notify}
  - name: tell
    when: alert.name == "KubePodCrashLooping" && alert.labels.pod == "web-1"
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/hooks/page/{{ alert.labels.pod }}", class: notify}
`, s.HostPort())
	}})
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "web-1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	for range 2 {
		select {
		case <-started:
		case <-time.After(30 * time.Second):
			t.Fatal("the restart and the page did not both start")
		}
	}
	if code, b := f.do("POST", "/api/v1/pause", adminToken, []byte(`{"reason":"stop","by":"alice"}`)); code != 200 {
		t.Fatalf("pause: %d %s", code, b)
	}
	pausedAt := time.Now()
	testwait.Until(t, 10*time.Second, "the restart's request cancelled", func() bool {
		mu.Lock()
		defer mu.Unlock()
		_, ok := cancelled["/hooks/restart/web-1"]
		return ok
	})
	mu.Lock()
	took := cancelled["/hooks/restart/web-1"].Sub(pausedAt)
	_, pageCancelled := cancelled["/hooks/page/web-1"]
	mu.Unlock()
	t.Logf("restart request cancelled %s after the pause answered", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("cancelled %s after the pause, want within about a second", took)
	}
	if pageCancelled {
		t.Fatal("the notification was cancelled by the pause")
	}
	close(releasePage)
	testwait.Until(t, 20*time.Second, "unknown/paused, the escalation and the page", func() bool {
		var restart, page, escalated bool
		for _, it := range f.actions("?limit=100") {
			url := fmt.Sprint(it["params"])
			switch {
			case strings.Contains(url, "/hooks/restart/"):
				restart = it["state"] == "unknown" && it["reason"] == "paused"
			case strings.Contains(url, "/hooks/page/escalated"):
				escalated = it["state"] == "succeeded"
			case strings.Contains(url, "/hooks/page/web-1"):
				page = it["state"] == "succeeded"
			}
		}
		return restart && page && escalated
	})
}

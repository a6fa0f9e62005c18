package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// TestProbeEndToEnd: an http probe's target goes down → after `for` the rule acts exactly once
// (heartbeats of the still-failing probe do not act again) → the target recovers → the incident
// resolves → on_resolved runs once.
func TestProbeEndToEnd(t *testing.T) {
	var down atomic.Bool
	var runs atomic.Int64 // probe requests the target received
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		runs.Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(target.Close)
	f := startApp(t, fixtureOpts{
		extra: fmt.Sprintf(`probes:
  - name: api-health
    interval: 200ms
    timeout: 200ms
    failures_to_fire: 2       # a slow answer on a loaded machine is not an outage
    labels: {service: api, severity: critical}
    http: {url: %q}
`, target.URL+"/health"),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: backend-down
    when: alert.source == "probe" && alert.name == "api-health" && alert.status == "firing"
    for: 1s
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/page/{{ alert.labels.service }}", class: notify}
    on_resolved:
      - handler: http.request
        params: {url: "http://%[1]s/rerun/{{ alert.labels.service }}", class: notify}
`, s.HostPort())
		},
	})
	count := func(prefix string) int {
		n := 0
		for _, c := range f.sink.Calls() {
			if strings.HasPrefix(c.Path, prefix) {
				n++
			}
		}
		return n
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sink calls %+v", f.sink.Calls())
		}
	})
	// Healthy for a while: nothing happens.
	testwait.Until(t, 30*time.Second, "the probe to run", func() bool { return metricValue(t, f, "responder_probe_success") == 1 })
	down.Store(true)
	start := time.Now()
	testwait.Until(t, 30*time.Second, "the page", func() bool { return count("/page/api") == 1 })
	if waited := time.Since(start); waited < time.Second {
		t.Fatalf("acted after %s, before the rule's for: 1s", waited)
	}
	// Still down for 8 more probe runs (1.6s at the probe's interval, longer than the rule's for),
	// whatever they published processed (nothing pending on the bus): still one page.
	paged := runs.Load()
	testwait.Keeps(t, 30*time.Second, "one page", func() bool { return count("/page/api") == 1 },
		"8 more failed probe runs, all processed", func() bool {
			return runs.Load() >= paged+8 && metricValue(t, f, "responder_bus_pending_messages") == 0
		})
	down.Store(false)
	testwait.Until(t, 30*time.Second, "on_resolved", func() bool { return count("/rerun/api") == 1 })
	code, b := f.do("GET", "/api/v1/incidents", readToken, nil)
	if code != 200 || !strings.Contains(string(b), `"state": "resolved"`) || !strings.Contains(string(b), `"probe_kind": "http"`) {
		t.Fatalf("incidents: %d %s", code, b)
	}
	if n := count("/page/api"); n != 1 {
		t.Fatalf("pages = %d, want 1", n)
	}
}

package app_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestProbeLeaderFailover: two replicas share one JetStream and one PostgreSQL; only the leader
// probes. The target goes down and the leader fires; the leader stops; the other replica takes the
// probes over and, when the target recovers, resolves the same episode: one incident, one action,
// one on_resolved.
func TestProbeLeaderFailover(t *testing.T) {
	var down atomic.Bool
	var hits [2]atomic.Int64 // probe requests seen before and after the failover
	phase := atomic.Int32{}
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits[phase.Load()].Add(1)
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(target.Close)
	nats := bustest.Start(t)
	db := pgtest.NewDatabase(t)
	opts := fixtureOpts{natsURL: nats.URL(), dbURL: db, sink: newSink(t),
		extra: fmt.Sprintf(`probes:
  - name: api-health
    interval: 200ms
    timeout: 200ms
    failures_to_fire: 2       # a slow answer on a loaded machine is not an outage
    successes_to_resolve: 2
    labels: {service: api}
    http: {url: %q}
`, target.URL+"/health"),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: backend-down
    when: alert.source == "probe" && alert.name == "api-health" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/page/{{ alert.labels.service }}", class: notify}
    on_resolved:
      - handler: http.request
        params: {url: "http://%[1]s/rerun/{{ alert.labels.service }}", class: notify}
`, s.HostPort())
		},
	}
	a := startApp(t, opts)
	b := startApp(t, opts)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("probe requests %d, %d", hits[0].Load(), hits[1].Load())
		for _, f := range []*fixture{a, b} {
			if f.cancel != nil { // still running
				_, inc := f.do("GET", "/api/v1/incidents", readToken, nil)
				_, aud := f.do("GET", "/api/v1/audit", readToken, nil)
				t.Logf("incidents %s\naudit %s", inc, aud)
				return
			}
		}
	})
	leading := func(f *fixture) bool { return metricValue(t, f, "responder_leader") == 1 }
	testwait.Until(t, 60*time.Second, "a leader", func() bool { return leading(a) != leading(b) })
	first, second := a, b
	if leading(b) {
		first, second = b, a
	}
	if metricValue(t, second, "responder_probe_success") != 0 {
		t.Fatal("the follower ran the probe")
	}
	calls := func(prefix string) int {
		n := 0
		for _, c := range opts.sink.Calls() {
			if strings.HasPrefix(c.Path, prefix) {
				n++
			}
		}
		return n
	}
	if n := calls("/page/api"); n != 0 {
		t.Fatalf("paged %d times while the target was up", n)
	}
	down.Store(true)
	testwait.Until(t, 60*time.Second, "the page", func() bool { return calls("/page/api") == 1 })
	first.stop() // releases the lease: the other replica takes the probes over
	phase.Store(1)
	testwait.Until(t, 60*time.Second, "the new leader to probe", func() bool { return leading(second) && hits[1].Load() >= 3 })
	down.Store(false)
	testwait.Until(t, 60*time.Second, "on_resolved", func() bool { return calls("/rerun/api") == 1 })
	code, body := second.do("GET", "/api/v1/incidents", readToken, nil)
	if code != 200 || strings.Count(string(body), `"rule": "backend-down"`) != 1 || !strings.Contains(string(body), `"state": "resolved"`) {
		t.Fatalf("want one resolved incident (the same episode across the failover): %d %s", code, body)
	}
	if n := calls("/page/api"); n != 1 {
		t.Fatalf("pages = %d, want 1", n)
	}
}

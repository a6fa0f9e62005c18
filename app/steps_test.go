package app_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// configEndpoint is a clients' config service (a pooler's or service discovery's API): it
// records every request it gets.
type configEndpoint struct {
	mu   sync.Mutex
	reqs []configRequest
}

type configRequest struct {
	Method, Path, ContentType, Body string
}

func (c *configEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	c.reqs = append(c.reqs, configRequest{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(b)})
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (c *configEndpoint) requests(path string) []configRequest {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []configRequest
	for _, r := range c.reqs {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// TestChainedStepsRepointClients is the runbook's failover with its chained step: a streaming
// pair; the primary stops → the probe fires → the promotion (id promote) waits for approval →
// approved → the standby is promoted → the next step PUTs the new primary's address, read from
// the promotion's result (steps.promote.result.new_primary), to the clients' config endpoint,
// once; the step after it reads the PUT's status. The API shows the result fields and the params
// each step was sent with.
func TestChainedStepsRepointClients(t *testing.T) {
	primary := pgtest.StartServer(t)
	standby := pgtest.StartStandby(t, primary)
	cfgSrv := &configEndpoint{}
	s := &sink{Server: httptest.NewServer(cfgSrv)}
	t.Cleanup(s.Close)
	f := startApp(t, fixtureOpts{sink: s,
		extra: ordersPairConfig(primary, standby),
		rules: func(s *sink) string {
			return fmt.Sprintf(`
rules:
  - name: database-failover
    when: alert.source == "probe" && alert.name == "orders-db" && alert.status == "firing"
    for: 1s
    actions:
      - id: promote
        handler: postgres.promote
        approval: required
        params: {cluster: orders, candidate: orders-2}
      - id: repoint
        handler: http.request
        params:
          url: "http://%[1]s/v1/kv/db/orders/primary"
          method: PUT
          body: '{{ toJSON({primary: steps.promote.result.new_primary, name: steps.promote.result.new_primary_name, timeline: steps.promote.result.timeline}) }}'
      - handler: http.request
        params:
          url: "http://%[1]s/v1/events"
          body: 'repointed to {{ steps.promote.result.new_primary }}: HTTP {{ steps.repoint.result.status }}'
`, s.HostPort())
		},
	})
	type action struct {
		ID           int64          `json:"id"`
		Step         int            `json:"step"`
		Handler      string         `json:"handler"`
		State        string         `json:"state"`
		Error        string         `json:"error"`
		Params       map[string]any `json:"params"`
		ResultFields map[string]any `json:"result_fields"`
	}
	steps := func() map[int]action {
		_, b := f.do("GET", "/api/v1/actions?rule=database-failover", readToken, nil)
		var l struct{ Items []action }
		must(t, json.Unmarshal(b, &l))
		out := map[int]action{}
		for _, a := range l.Items {
			out[a.Step] = a
		}
		return out
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("actions %+v", steps())
		}
	})

	testwait.Until(t, 60*time.Second, "the probe to see the primary", func() bool { return metricValue(t, f, "responder_probe_success") == 1 })
	primary.Stop(t)
	testwait.Until(t, 60*time.Second, "the promotion to await approval", func() bool { return steps()[0].State == "awaiting_approval" })
	// Planned behind it, the repoint step holds its params as written: nothing to render from yet.
	if body := steps()[1].Params["body"]; body != "{{ toJSON({primary: steps.promote.result.new_primary, name: steps.promote.result.new_primary_name, timeline: steps.promote.result.timeline}) }}" {
		t.Errorf("planned repoint body = %v, want the rule's text", body)
	}
	if code, b := f.do("POST", fmt.Sprintf("/api/v1/actions/%d/approve", steps()[0].ID), adminToken, []byte(`{"by":"alice"}`)); code != 200 {
		t.Fatalf("approve: %d %s", code, b)
	}
	testwait.Until(t, 90*time.Second, "the clients to be told", func() bool { return steps()[2].State == "succeeded" })

	u, err := url.Parse(standby.URL("postgres"))
	must(t, err)
	newPrimary := u.Host // what clients connect to now: the standby's host:port
	got := steps()
	if f := got[0].ResultFields; f["new_primary"] != newPrimary || f["new_primary_name"] != "orders-2" || f["timeline"] != float64(2) {
		t.Errorf("promote result_fields = %v, want new_primary %s, orders-2, timeline 2", f, newPrimary)
	}
	want := fmt.Sprintf(`{"name":"orders-2","primary":%q,"timeline":2}`, newPrimary)
	puts := cfgSrv.requests("/v1/kv/db/orders/primary")
	if len(puts) != 1 || puts[0].Method != http.MethodPut || puts[0].Body != want || puts[0].ContentType != "application/json" {
		t.Fatalf("config endpoint got %+v, want one PUT of %s (application/json)", puts, want)
	}
	if body := got[1].Params["body"]; body != want {
		t.Errorf("repoint params.body = %v, want what was sent: %s", body, want)
	}
	if f := got[1].ResultFields; f["status"] != float64(http.StatusNoContent) {
		t.Errorf("repoint result_fields = %v, want status 204", f)
	}
	events := cfgSrv.requests("/v1/events")
	if wantEvent := "repointed to " + newPrimary + ": HTTP 204"; len(events) != 1 || events[0].Body != wantEvent {
		t.Errorf("events endpoint got %+v, want one %q", events, wantEvent)
	}
}

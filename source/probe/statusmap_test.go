package probe

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
)

// fakeVault answers /v1/sys/health as Vault documents it
// (https://developer.hashicorp.com/vault/api-docs/system/health): the status code says the
// node's state, the JSON body (GET only) says it too.
type fakeVault struct {
	state atomic.Value // one of vaultStates' keys
}

var vaultStates = map[string]struct {
	code int
	body map[string]any
}{
	"active":             {200, map[string]any{"initialized": true, "sealed": false, "standby": false}},
	"standby":            {429, map[string]any{"initialized": true, "sealed": false, "standby": true}},
	"dr-secondary":       {472, map[string]any{"initialized": true, "sealed": false, "replication_dr_mode": "secondary"}},
	"perf-standby":       {473, map[string]any{"initialized": true, "sealed": false, "standby": true, "performance_standby": true}},
	"standby-no-active":  {474, map[string]any{"initialized": true, "sealed": false, "standby": true}},
	"not-initialized":    {501, map[string]any{"initialized": false, "sealed": true}},
	"sealed":             {503, map[string]any{"initialized": true, "sealed": true}},
	"removed":            {530, map[string]any{"initialized": true, "sealed": false, "removed_from_cluster": true}},
	"internal-error-500": {500, nil},
}

func (v *fakeVault) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/v1/sys/health" {
		http.NotFound(w, r)
		return
	}
	s := vaultStates[v.state.Load().(string)]
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.code)
	if r.Method == http.MethodGet && s.body != nil {
		_ = json.NewEncoder(w).Encode(s.body)
	}
}

// TestHTTPStatusMap: an http probe with Vault's status_map against a fake answering Vault's
// documented codes: active and standby nodes are healthy, sealed and uninitialised ones fail and
// label the alert with the status; an unmapped status fails too.
func TestHTTPStatusMap(t *testing.T) {
	v := &fakeVault{}
	v.state.Store("active")
	srv := httptest.NewServer(v)
	t.Cleanup(srv.Close)
	rec := &recorder{}
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - name: vault
    labels: {service: vault}
    http:
      url: %[1]q
      status_map: {200: ok, 429: ok, 472: ok, 473: ok, 474: failing, 501: failing, 503: failing, 530: failing}
  - name: vault-head
    http:
      url: %[1]q
      method: HEAD
      status_map: {200: ok, 429: ok, 503: failing}
  - name: vault-sealed-ok
    http:
      url: %[1]q
      status_map: {200: ok, 503: ok}
      body_regexp: '"sealed":false'
`, srv.URL+"/v1/sys/health")), Options{Publish: rec.publish})

	for _, tc := range []struct {
		state, probe string
		ok           bool
		reason       string
	}{
		{"active", "vault", true, ""},
		{"standby", "vault", true, ""},
		{"dr-secondary", "vault", true, ""},
		{"perf-standby", "vault", true, ""},
		{"standby-no-active", "vault", false, "status 474 is failing in status_map"},
		{"not-initialized", "vault", false, "status 501 is failing in status_map"},
		{"sealed", "vault", false, "GET " + srv.URL + "/v1/sys/health: status 503 is failing in status_map"},
		{"removed", "vault", false, "status 530 is failing in status_map"},
		{"internal-error-500", "vault", false, "status 500 is not in status_map"},
		{"standby", "vault-head", true, ""},
		{"sealed", "vault-head", false, "HEAD " + srv.URL + "/v1/sys/health: status 503 is failing"},
		{"dr-secondary", "vault-head", false, "status 472 is not in status_map"},
		// body_regexp still applies to a status mapped to ok.
		{"active", "vault-sealed-ok", true, ""},
		{"sealed", "vault-sealed-ok", false, `body does not match "\"sealed\":false"`},
	} {
		t.Run(tc.probe+"/"+tc.state, func(t *testing.T) {
			v.state.Store(tc.state)
			res := runOnce(t, r, tc.probe)
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("success %v reason %q; want %v, %q", res.Success, res.Reason, tc.ok, tc.reason)
			}
			if isNaN(res.Value) || res.Value <= 0 || res.Value > 5 {
				t.Errorf("value = %v, want the latency", res.Value)
			}
			wantStatus := ""
			if !tc.ok {
				wantStatus = fmt.Sprint(vaultStates[tc.state].code)
			}
			if got := res.Labels[config.LabelHTTPStatus]; got != wantStatus {
				t.Errorf("label http_status = %q, want %q (set on failures only)", got, wantStatus)
			}
		})
	}

	// An episode: the alert carries the status of its first failure from firing to resolved (one
	// fingerprint), and a success leaves nothing behind for a later connection failure.
	for _, s := range []string{"active", "sealed", "not-initialized", "standby"} {
		v.state.Store(s)
		runOnce(t, r, "vault")
	}
	var episode []alert.Alert
	for _, a := range rec.all() {
		if a.Labels[alert.NameLabel] == "vault" {
			episode = append(episode, a)
		}
	}
	episode = episode[len(episode)-2:]
	if episode[0].Status != alert.StatusFiring || episode[1].Status != alert.StatusResolved ||
		episode[0].Labels[config.LabelHTTPStatus] != "503" || alert.Fingerprint(episode[0].Labels) != alert.Fingerprint(episode[1].Labels) ||
		episode[0].Labels["service"] != "vault" {
		t.Errorf("episode = %+v, want firing then resolved, both labelled http_status=503", episode)
	}
	srv.Close()
	if res := runOnce(t, r, "vault"); res.Success || res.Labels[config.LabelHTTPStatus] != "" || !strings.Contains(res.Reason, "connect") {
		t.Errorf("Vault unreachable: %+v, want a connection failure without http_status", res)
	}
}

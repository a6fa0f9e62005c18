package drill

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/alertmanager/notify/webhook"

	"github.com/responder-sre/responder/alert"
)

const (
	apiSecret     = "api-secret-4d1f"
	webhookSecret = "webhook-secret-9c2e"
)

// apiServer is a stand-in responder API answering from handlers keyed by "METHOD path", each
// checking the bearer token it expects.
type apiServer struct {
	t      *testing.T
	mu     sync.Mutex
	routes map[string]func(w http.ResponseWriter, r *http.Request, body []byte)
	calls  []string
}

func newAPIServer(t *testing.T) (*apiServer, *HTTPTarget) {
	t.Helper()
	s := &apiServer{t: t, routes: map[string]func(http.ResponseWriter, *http.Request, []byte){}}
	srv := httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	apiFile, hookFile := filepath.Join(dir, "api"), filepath.Join(dir, "hook")
	if err := os.WriteFile(apiFile, []byte(apiSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(hookFile, []byte(webhookSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	tg, err := NewHTTPTarget(srv.URL+"/", apiFile, hookFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s, tg
}

func (s *apiServer) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	key := r.Method + " " + r.URL.Path
	s.mu.Lock()
	s.calls = append(s.calls, key+"?"+r.URL.RawQuery)
	h := s.routes[key]
	s.mu.Unlock()
	want := "Bearer " + apiSecret
	if r.URL.Path == "/webhook/alertmanager" {
		want = "Bearer " + webhookSecret
	}
	switch {
	case h == nil:
		http.Error(w, "404 page not found", http.StatusNotFound)
	case r.Header.Get("Authorization") != want:
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = w.Write([]byte(`{"error":"missing or invalid bearer token"}`))
	default:
		h(w, r, body)
	}
}

func answer(code int, v any) func(http.ResponseWriter, *http.Request, []byte) {
	return func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(v)
	}
}

func TestHTTPTargetStartPausedFinish(t *testing.T) {
	s, tg := newAPIServer(t)
	ctx := context.Background()
	s.routes["GET /api/v1/status"] = answer(200, map[string]any{"paused": true, "leader": true})
	if p, err := tg.Paused(ctx); err != nil || !p {
		t.Errorf("Paused() = %v, %v", p, err)
	}
	var started map[string]any
	s.routes["POST /api/v1/drills"] = func(w http.ResponseWriter, r *http.Request, body []byte) {
		_ = json.Unmarshal(body, &started)
		answer(201, map[string]any{"id": 9, "run_id": "a-20250102T030405Z-0001", "name": "a", "probes": []string{}})(w, r, body)
	}
	run, err := tg.Start(ctx, Start{Name: "a", PageReal: true, RTO: 90 * time.Second})
	if err != nil || run != (Run{ID: 9, RunID: "a-20250102T030405Z-0001", Name: "a"}) {
		t.Fatalf("Start() = %+v, %v", run, err)
	}
	if want := map[string]any{"name": "a", "probes": []any{}, "page_real": true, "rto_seconds": 90.0}; !cmp.Equal(started, want) {
		t.Errorf("start body = %v, want %v", started, want)
	}
	var finished Report
	s.routes["POST /api/v1/drills/9/finish"] = func(w http.ResponseWriter, r *http.Request, body []byte) {
		_ = json.Unmarshal(body, &finished)
		answer(200, map[string]any{"id": 9, "run_id": "a-20250102T030405Z-0001", "passed": false})(w, r, body)
	}
	rep := Report{Name: "a", RunID: run.RunID, RecoverSeconds: 4.2, Failure: "recover 4.2s exceeds rto 1s", Steps: []Step{{Rule: "r", Handler: "h"}}}
	if _, err := tg.Finish(ctx, 9, rep); err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(finished, rep) {
		t.Errorf("finish body = %+v", finished)
	}
	s.routes["POST /api/v1/drills/9/approve/12"] = answer(200, map[string]any{"action": map[string]any{"id": 12}, "replay": false})
	if err := tg.Approve(ctx, 9, 12); err != nil {
		t.Error(err)
	}
}

func TestHTTPTargetSend(t *testing.T) {
	s, tg := newAPIServer(t)
	var got webhook.Message
	rejected := 0
	s.routes["POST /webhook/alertmanager"] = func(w http.ResponseWriter, r *http.Request, body []byte) {
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("payload: %v", err)
		}
		answer(200, map[string]any{"status": "ok", "accepted": 1 - rejected, "rejected": rejected})(w, r, body)
	}
	labels := map[string]string{"alertname": "TargetDown", alert.DrillLabel: "r1"}
	a := alert.Alert{Status: alert.StatusFiring, Labels: labels, StartsAt: t0, Fingerprint: alert.Fingerprint(labels)}
	if err := tg.Send(context.Background(), []alert.Alert{a}); err != nil {
		t.Fatal(err)
	}
	if got.Version != "4" || len(got.Alerts) != 1 || !cmp.Equal(map[string]string(got.Alerts[0].Labels), labels) || got.Alerts[0].Status != "firing" || !got.Alerts[0].StartsAt.Equal(t0) {
		t.Errorf("payload = %+v", got.Data)
	}
	a.Status, a.EndsAt = alert.StatusResolved, t0.Add(time.Minute)
	rejected = 1
	err := tg.Send(context.Background(), []alert.Alert{a})
	if err == nil || !strings.Contains(err.Error(), "1 of 1 alerts rejected") {
		t.Errorf("rejected alert: err = %v", err)
	}
	if got.Status != "resolved" || got.Alerts[0].Status != "resolved" || !got.Alerts[0].EndsAt.Equal(a.EndsAt) {
		t.Errorf("resolve payload = %+v", got)
	}
}

func TestHTTPTargetIncidents(t *testing.T) {
	s, tg := newAPIServer(t)
	const run = "a-20250102T030405Z-0001"
	s.routes["GET /api/v1/incidents"] = func(w http.ResponseWriter, r *http.Request, body []byte) {
		if r.URL.Query().Get("drill") != run {
			t.Errorf("drill filter = %q", r.URL.Query().Get("drill"))
		}
		if r.URL.Query().Get("cursor") == "" {
			answer(200, map[string]any{"items": []map[string]any{{"id": 1, "drill": run}, {"id": 2, "drill": "other-run"}}, "next_cursor": "c2"})(w, r, body)
			return
		}
		// An older server without the drill field: the label says which run.
		answer(200, map[string]any{"items": []map[string]any{{"id": 3, "labels": map[string]string{alert.DrillLabel: run}}, {"id": 4}}, "next_cursor": ""})(w, r, body)
	}
	for _, n := range []int{1, 3} {
		s.routes[fmt.Sprintf("GET /api/v1/incidents/%d", n)] = answer(200, map[string]any{"id": n, "drill": run,
			"actions": []map[string]any{{"id": 10 + n, "rule": "r", "handler": "h", "state": "succeeded", "verify_deadline": nil}},
			"audit":   []map[string]any{{"at": t0, "action_id": 10 + n, "kind": "approval", "reason": "approved", "actor": "drill:a"}}})
	}
	incs, err := tg.Incidents(context.Background(), run)
	if err != nil {
		t.Fatal(err)
	}
	if len(incs) != 2 || incs[0].ID != 1 || incs[1].ID != 3 || incs[1].Actions[0].ID != 13 || *incs[1].Audit[0].ActionID != 13 || incs[1].Audit[0].Kind != "approval" {
		t.Errorf("incidents = %+v", incs)
	}
	delete(s.routes, "GET /api/v1/incidents/3")
	if _, err := tg.Incidents(context.Background(), run); err == nil || !strings.Contains(err.Error(), "GET /api/v1/incidents/3: HTTP 404: 404 page not found") {
		t.Errorf("missing incident: err = %v", err)
	}
}

func TestHTTPTargetErrors(t *testing.T) {
	s, tg := newAPIServer(t)
	ctx := context.Background()
	s.routes["POST /api/v1/drills"] = answer(400, map[string]string{"error": "rto_seconds must be positive"})
	s.routes["POST /api/v1/drills/9/approve/12"] = answer(409, map[string]string{"error": "action 12 is not of drill run 9"})
	s.routes["POST /webhook/alertmanager"] = answer(503, map[string]string{"status": "error", "error": "alerts not stored, retry later: bus down"})
	s.routes["GET /api/v1/status"] = func(w http.ResponseWriter, _ *http.Request, _ []byte) {
		w.WriteHeader(http.StatusBadGateway)
		_, _ = w.Write([]byte("<html>bad gateway</html>\nmore"))
	}
	s.routes["POST /api/v1/drills/9/finish"] = answer(200, "not an object")
	for _, tc := range []struct {
		name string
		call func() error
		want string
	}{
		{"start 400", func() error { _, err := tg.Start(ctx, Start{Name: "a"}); return err }, "POST /api/v1/drills: HTTP 400: rto_seconds must be positive"},
		{"approve 409", func() error { return tg.Approve(ctx, 9, 12) }, "POST /api/v1/drills/9/approve/12: HTTP 409: action 12 is not of drill run 9"},
		{"send 503", func() error { return tg.Send(ctx, nil) }, "POST /webhook/alertmanager: HTTP 503: alerts not stored, retry later: bus down"},
		{"status 502 html", func() error { _, err := tg.Paused(ctx); return err }, "GET /api/v1/status: HTTP 502: <html>bad gateway</html>"},
		{"unknown run 404", func() error { _, err := tg.Finish(ctx, 8, Report{}); return err }, "POST /api/v1/drills/8/finish: HTTP 404"},
		{"undecodable", func() error { _, err := tg.Finish(ctx, 9, Report{}); return err }, "POST /api/v1/drills/9/finish: undecodable answer"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), apiSecret) || strings.Contains(err.Error(), webhookSecret) {
				t.Errorf("error shows a token: %v", err)
			}
		})
	}

	s.routes["POST /api/v1/drills"] = answer(201, map[string]any{"id": 0})
	if _, err := tg.Start(ctx, Start{Name: "a"}); err == nil || !strings.Contains(err.Error(), "no run id") {
		t.Errorf("start without a run id: err = %v", err)
	}

	// A wrong token: the server's 401 reason, and the token is not shown.
	bad := *tg
	bad.apiToken = "wrong-" + apiSecret
	if _, err := bad.Paused(ctx); err == nil || !strings.Contains(err.Error(), "HTTP 401: missing or invalid bearer token") || strings.Contains(err.Error(), apiSecret) {
		t.Errorf("wrong token: err = %v", err)
	}
	if str := fmt.Sprintf("%v %+v %s", tg, tg, tg); strings.Contains(str, apiSecret) || strings.Contains(str, webhookSecret) {
		t.Errorf("the target prints a token: %s", str)
	}
}

func TestNewHTTPTargetErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		url, api, hook, want string
	}{
		{"localhost:9095", "", "", `url "localhost:9095": want http(s)://host:port`},
		{"ftp://h", "", "", "want http(s)://host:port"},
		{"http://h", filepath.Join(dir, "missing"), "", "api token: open "},
		{"http://h", "", empty, "webhook token: " + empty + " is empty"},
	} {
		if _, err := NewHTTPTarget(tc.url, tc.api, tc.hook, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewHTTPTarget(%q, %q, %q): err = %v, want %q", tc.url, tc.api, tc.hook, err, tc.want)
		}
	}
}

package main_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/store/pgtest"
)

const drillFile = `drills:
  - name: api-down
    rto: 5m
    timeout: 20s
    inject:
      alerts:
        - labels: {alertname: TargetDown, job: payments-api}
    expect:
      - {rule: target-down-hook, handler: http.request}
`

// fakeDrillAPI is a stand-in for a responder's drill API and webhook: the CLI's edge cases
// (output formats, exit codes). Real-server drills are tested with the drill examples.
type fakeDrillAPI struct {
	mu       sync.Mutex
	state    string // the final state of the drill's action
	runID    string
	sentAt   time.Time
	finished []map[string]any
}

func (f *fakeDrillAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	want := "Bearer api-token"
	if r.URL.Path == "/webhook/alertmanager" {
		want = "Bearer hook-token"
	}
	if r.Header.Get("Authorization") != want {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"error":"missing or invalid bearer token"}`)
		return
	}
	body, _ := io.ReadAll(r.Body)
	var out any
	switch r.Method + " " + r.URL.Path {
	case "GET /api/v1/status":
		out = map[string]any{"paused": false}
	case "POST /api/v1/drills":
		f.runID = "api-down-20250102T030405Z-0001"
		w.WriteHeader(http.StatusCreated)
		out = map[string]any{"id": 1, "run_id": f.runID, "name": "api-down"}
	case "POST /webhook/alertmanager":
		if !strings.Contains(string(body), f.runID) {
			http.Error(w, `{"error":"no drill label"}`, http.StatusBadRequest)
			return
		}
		f.sentAt = time.Now()
		out = map[string]any{"status": "ok", "accepted": 1, "rejected": 0}
	case "GET /api/v1/incidents":
		items := []any{}
		if !f.sentAt.IsZero() {
			items = append(items, map[string]any{"id": 1, "drill": f.runID})
		}
		out = map[string]any{"items": items, "next_cursor": ""}
	case "GET /api/v1/incidents/1":
		t := func(ms int) time.Time { return f.sentAt.Add(time.Duration(ms) * time.Millisecond) }
		out = map[string]any{"id": 1, "drill": f.runID, "starts_at": f.sentAt, "received_at": t(20), "created_at": t(25),
			"actions": []any{map[string]any{"id": 5, "rule": "target-down-hook", "handler": "http.request", "state": f.state,
				"reason": map[string]string{"failed": "server_error"}[f.state], "error": map[string]string{"failed": "HTTP 500"}[f.state],
				"created_at": t(30), "started_at": t(40), "finished_at": t(140)}}}
	case "POST /api/v1/drills/1/finish":
		var rep map[string]any
		_ = json.Unmarshal(body, &rep)
		f.finished = append(f.finished, rep)
		out = map[string]any{"id": 1, "run_id": f.runID}
	default:
		http.NotFound(w, r)
		return
	}
	_ = json.NewEncoder(w).Encode(out)
}

func TestDrillRunCLI(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	drills := write("drills.yml", drillFile)
	apiTok, hookTok := write("api-token", "api-token\n"), write("hook-token", "hook-token\n")
	for _, tc := range []struct {
		state, output string
		code          int
		want          []string
	}{
		{"succeeded", "text", 0, []string{"api-down", "PASS", "api-down-20250102T030405Z-0001", "5m0s", "10ms", "100ms",
			"0     target-down-hook  http.request  succeeded", "succeeded"}},
		{"succeeded", "json", 0, []string{`"passed": true`, `"rto_seconds": 300`, `"detect_seconds": `, `"decide_seconds": 0.01`,
			`"act_seconds": 0.1`, `"recover_seconds": `, `"approve_seconds": 0`, `"steps": [`, `"failure": ""`}},
		{"failed", "text", 1, []string{"FAIL", "failure: expect[0] target-down-hook/http.request: action 5 ended failed (server_error): HTTP 500, want succeeded"}},
	} {
		t.Run(tc.state+"-"+tc.output, func(t *testing.T) {
			api := &fakeDrillAPI{state: tc.state}
			srv := httptest.NewServer(api)
			defer srv.Close()
			out, code := run(t, "drill", "run", "--url", srv.URL, "--api-token-file", apiTok, "--webhook-token-file", hookTok,
				"--poll=10ms", "--output", tc.output, drills)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "api-token\n") || strings.Contains(out, "Bearer") {
				t.Errorf("output shows a token:\n%s", out)
			}
			api.mu.Lock()
			defer api.mu.Unlock()
			if len(api.finished) != 1 || api.finished[0]["passed"] != (tc.code == 0) {
				t.Errorf("finish posted %v", api.finished)
			}
		})
	}
}

func TestDrillRunBadInput(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("drills.yml", drillFile)
	bad := write("bad.yml", "drills:\n  - name: api-down\n    rto: 0s\n    inject: {}\n    expect: []\n")
	unknown := write("unknown.yml", "drills:\n  - name: a\n    rtoo: 1m\n")
	unreadable := t.TempDir() // a directory: reading it fails, also as root
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"invalid scenario", []string{bad}, []string{bad + ":3: drills[0].rto: must be positive", bad + ":4: drills[0].inject:", bad + ":5: drills[0].expect:"}},
		{"unknown key", []string{unknown}, []string{unknown + `:3: unknown key "rtoo"`}},
		{"missing file", []string{filepath.Join(dir, "nope.yml")}, []string{"load drills: open " + filepath.Join(dir, "nope.yml")}},
		{"missing api token", []string{"--api-token-file", filepath.Join(dir, "nope"), good}, []string{"api token: open "}},
		{"unreadable webhook token", []string{"--webhook-token-file", unreadable, good}, []string{"webhook token: "}},
		{"bad url", []string{"--url", "localhost:9095", good}, []string{`url "localhost:9095": want http(s)://host:port`}},
		{"bad output", []string{"--output", "xml", good}, []string{"enum value must be one of text,json"}},
		{"no file", nil, []string{"required argument 'file' not provided"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, append([]string{"drill", "run"}, tc.args...)...)
			if code != 2 {
				t.Fatalf("exit %d, want 2:\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestDrillRunAgainstServe: the built binary drives the built binary. `responder drill run`
// injects a synthetic crash-loop alert into `responder serve` (PostgreSQL, embedded JetStream),
// the rule's hook runs once, the drill passes (exit 0) and is in the history with the report;
// the same drill while responder is paused fails (exit 1) and says paused.
func TestDrillRunAgainstServe(t *testing.T) {
	s := newSink(t, 0)
	dir := setup(t, s, pgtest.NewDatabase(t), "")
	p := serve(t, dir, t.TempDir(), freePort(t))
	drills := filepath.Join(dir, "drills.yml")
	if err := os.WriteFile(drills, []byte(`drills:
  - name: pod-restart
    rto: 1m
    inject:
      alerts:
        - labels: {alertname: KubePodCrashLooping, namespace: shop, pod: drill-pod}
    expect:
      - {rule: restart-crashlooping-pod, handler: http.request, state: succeeded}
    resolve: true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	drill := func() (string, int) {
		return run(t, "drill", "run", "--url", p.base, "--api-token-file", filepath.Join(dir, "api-token"),
			"--webhook-token-file", filepath.Join(dir, "webhook-token"), "--poll=100ms", "--output=json", drills)
	}
	out, code := drill()
	if code != 0 {
		t.Fatalf("drill run exit %d:\n%s", code, out)
	}
	var reps []struct {
		RunID          string  `json:"run_id"`
		Passed         bool    `json:"passed"`
		RecoverSeconds float64 `json:"recover_seconds"`
		Failure        string  `json:"failure"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "["):]), &reps); err != nil || len(reps) != 1 || !reps[0].Passed || reps[0].RecoverSeconds <= 0 {
		t.Fatalf("report %v (%v):\n%s", reps, err, out)
	}
	if calls, _ := s.snapshot(); calls["drill-pod"] != 1 {
		t.Fatalf("hook calls %v, want one for drill-pod", calls)
	}
	var hist struct {
		Items []struct {
			RunID   string `json:"run_id"`
			Trigger string `json:"trigger"`
			Passed  *bool  `json:"passed"`
		} `json:"items"`
	}
	p.get(t, "/api/v1/drills", &hist)
	if len(hist.Items) != 1 || hist.Items[0].RunID != reps[0].RunID || hist.Items[0].Trigger != "cli" || hist.Items[0].Passed == nil || !*hist.Items[0].Passed {
		t.Fatalf("drill history %+v, want run %s by the CLI, passed", hist.Items, reps[0].RunID)
	}
	var acts struct {
		Items []struct {
			Drill string `json:"drill"`
		} `json:"items"`
	}
	p.get(t, "/api/v1/actions?drill="+reps[0].RunID, &acts)
	if len(acts.Items) != 1 || acts.Items[0].Drill != reps[0].RunID {
		t.Fatalf("actions of the run %+v", acts.Items)
	}

	req, _ := http.NewRequest(http.MethodPost, p.base+"/api/v1/pause", strings.NewReader(`{"reason":"drill test"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("pause: %d", resp.StatusCode)
	}
	out, code = drill()
	if code != 1 || !strings.Contains(out, `"passed": false`) || !strings.Contains(out, "paused") {
		t.Fatalf("a drill while paused: exit %d, want 1 and a failure saying paused:\n%s", code, out)
	}
	if calls, _ := s.snapshot(); calls["drill-pod"] != 1 {
		t.Fatalf("hook calls after the paused drill %v, want still one", calls)
	}
}

package app_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/app"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
)

// TestMain stops the package's PostgreSQL server (pgtest) and closes the browser of the console's
// browser tests (browsertest) once every test has run.
func TestMain(m *testing.M) {
	code := pgtest.Run(m)
	closeBrowser()
	os.Exit(code)
}

const (
	hookToken  = "hook-token-for-tests"
	adminToken = "admin-token-for-tests"
	readToken  = "read-token-for-tests"
)

// sink is the downstream http.request calls: a real HTTP server recording what it receives.
type sink struct {
	*httptest.Server
	mu    sync.Mutex
	calls []sinkCall
}

type sinkCall struct {
	Path, Key, Auth string
	Body            map[string]any
}

func newSink(t *testing.T) *sink {
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		s.mu.Lock()
		s.calls = append(s.calls, sinkCall{Path: r.URL.Path, Key: r.Header.Get("Idempotency-Key"), Auth: r.Header.Get("Authorization"), Body: body})
		s.mu.Unlock()
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) Calls() []sinkCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]sinkCall(nil), s.calls...)
}

func (s *sink) HostPort() string { u, _ := url.Parse(s.URL); return u.Host }

func rulesYAML(s *sink) string {
	return fmt.Sprintf(`
rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    cooldown: 1m
    actions:
      - handler: http.request
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
          body: '{{ toJSON({pod: alert.labels.pod, namespace: alert.labels.namespace}) }}'
`, s.HostPort())
}

type fixture struct {
	t      *testing.T
	dir    string
	app    *app.App
	base   string
	sink   *sink
	cancel context.CancelFunc
	done   chan error
}

type fixtureOpts struct {
	natsURL string
	dbURL   string
	dryRun  bool
	noAuth  bool               // --web.no-auth
	extra   string             // appended to the config
	rules   func(*sink) string // the rule file (default rulesYAML)
	sink    *sink              // the sink (default a new one): replicas of one test share it
	storage string             // --storage.path (default a temporary directory)
	logger  slog.Handler       // the app's log (default: warnings to t.Log)
	api     string             // more keys of the api: mapping, in flow style (", tokens: [...]")
	files   map[string]string  // files written beside the config (token files)
	hook    string             // webhook.bearer_token (default hookToken)
	hosts   []string           // more handlers.http.allowed_hosts than the sink's
	http    string             // more keys of the handlers.http mapping, in flow style (", timeout: 1s")
	// natsAuth, when set, is nats.user; its password is the file nats-password (put it in files).
	natsAuth string
}

// busSigningKey is the bus.signing_key_file of every fixture on an external bus (replicas of one
// test share it, as they must).
const busSigningKey = "0123456789abcdef0123456789abcdef-fixture-signing-key"

// withSigningKey adds bus.signing_key_file to a config's extra keys (into its bus: mapping when
// it has one) and writes the key file.
func withSigningKey(t *testing.T, dir, extra string) string {
	t.Helper()
	must(t, os.WriteFile(filepath.Join(dir, "bus-signing-key"), []byte(busSigningKey+"\n"), 0o600))
	if strings.Contains(extra, "bus: {") {
		return strings.Replace(extra, "bus: {", "bus: {signing_key_file: bus-signing-key, ", 1)
	}
	return extra + "bus: {signing_key_file: bus-signing-key}\n"
}

func writeConfig(t *testing.T, dir string, s *sink, o fixtureOpts) string {
	t.Helper()
	if o.natsURL != "" && !strings.Contains(o.extra, "bus:") {
		// bustest runs one server: the stream cannot have the external default of 3 replicas.
		o.extra += "bus: {replicas: 1}\n"
	}
	if o.natsURL != "" {
		o.extra = withSigningKey(t, dir, o.extra)
	}
	natsKeys := ""
	if o.natsAuth != "" {
		natsKeys = fmt.Sprintf(", user: %q, password_file: nats-password", o.natsAuth)
	}
	cfg := fmt.Sprintf(`
nats: {url: %q%s}
database: {url: %q}
webhook: {bearer_token: %q}
api: {token: %q, read_token: %q%s}
rule_files: [rules/*.yml]
handlers:
  http: {allowed_hosts: [%q%s]%s}
%s`, o.natsURL, natsKeys, o.dbURL, cmp.Or(o.hook, hookToken), adminToken, readToken, o.api, s.HostPort(), moreHosts(o.hosts), o.http, o.extra)
	must(t, os.MkdirAll(filepath.Join(dir, "rules"), 0o755))
	for name, content := range o.files {
		must(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600))
	}
	must(t, os.WriteFile(filepath.Join(dir, "responder.yml"), []byte(cfg), 0o600))
	rules := rulesYAML(s)
	if o.rules != nil {
		rules = o.rules(s)
	}
	must(t, os.WriteFile(filepath.Join(dir, "rules", "pods.yml"), []byte(rules), 0o644))
	return filepath.Join(dir, "responder.yml")
}

// moreHosts writes hosts as the rest of a YAML flow list.
func moreHosts(hosts []string) string {
	var b strings.Builder
	for _, h := range hosts {
		fmt.Fprintf(&b, ", %q", h)
	}
	return b.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func startApp(t *testing.T, o fixtureOpts) *fixture {
	t.Helper()
	if o.dbURL == "" {
		o.dbURL = pgtest.NewDatabase(t)
	}
	f := &fixture{t: t, dir: t.TempDir(), sink: o.sink}
	if f.sink == nil {
		f.sink = newSink(t)
	}
	cfg := writeConfig(t, f.dir, f.sink, o)
	if o.storage == "" {
		o.storage = filepath.Join(f.dir, "data")
	}
	if o.logger == nil {
		o.logger = slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})
	}
	a, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: "127.0.0.1:0",
		StoragePath: o.storage, DryRun: o.dryRun, NoAuth: o.noAuth, Version: "test", DrainTimeout: 5 * time.Second, MetricsRefreshInterval: 100 * time.Millisecond,
		Logger: slog.New(o.logger)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.app, f.base, f.cancel, f.done = a, "http://"+a.Addr(), cancel, make(chan error, 1)
	go func() { f.done <- a.Run(ctx) }()
	t.Cleanup(f.stop)
	return f
}

func (f *fixture) stop() {
	if f.cancel == nil {
		return
	}
	f.cancel()
	f.cancel = nil
	select {
	case err := <-f.done:
		if err != nil {
			f.t.Errorf("app stopped with %v", err)
		}
	case <-time.After(30 * time.Second):
		f.t.Error("app did not stop within 30s")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// payload builds an Alertmanager v4 webhook body with one firing KubePodCrashLooping alert per pod.
func payload(status string, starts time.Time, pods ...string) []byte {
	type am struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	var as []am
	for _, p := range pods {
		a := am{Status: status, StartsAt: starts, Labels: map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": p, "severity": "critical"},
			Annotations: map[string]string{"summary": "pod " + p + " is crash looping"}}
		if status == "resolved" {
			a.EndsAt = starts.Add(5 * time.Minute)
		}
		as = append(as, a)
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": "{}:{alertname=\"KubePodCrashLooping\"}", "truncatedAlerts": 0,
		"status": status, "receiver": "responder", "groupLabels": map[string]string{"alertname": "KubePodCrashLooping"},
		"commonLabels": map[string]string{}, "commonAnnotations": map[string]string{}, "externalURL": "http://alertmanager:9093", "alerts": as})
	return b
}

func (f *fixture) do(method, path, token string, body []byte) (int, []byte) {
	f.t.Helper()
	req, err := http.NewRequest(method, f.base+path, bytes.NewReader(body))
	must(f.t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(f.t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (f *fixture) post(body []byte) int {
	code, _ := f.do(http.MethodPost, "/webhook/alertmanager", hookToken, body)
	return code
}

func (f *fixture) actions(query string) []map[string]any {
	f.t.Helper()
	code, b := f.do(http.MethodGet, "/api/v1/actions"+query, adminToken, nil)
	if code != 200 {
		f.t.Fatalf("GET /api/v1/actions: %d %s", code, b)
	}
	var l struct {
		Items      []map[string]any `json:"items"`
		NextCursor *string          `json:"next_cursor"`
	}
	must(f.t, json.Unmarshal(b, &l))
	if l.NextCursor == nil || l.Items == nil {
		f.t.Fatalf("list without items/next_cursor: %s", b)
	}
	return l.Items
}

func countState(items []map[string]any, state string) int {
	n := 0
	for _, it := range items {
		if it["state"] == state {
			n++
		}
	}
	return n
}

func TestConcurrentDuplicatePostsActOnce(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	body := payload("firing", time.Now().Add(-2*time.Minute).UTC().Truncate(time.Second), "checkout-1", "checkout-2", "checkout-3")
	var wg sync.WaitGroup
	codes := make(chan int, 50)
	for range 50 {
		wg.Add(1)
		go func() { defer wg.Done(); codes <- f.post(body) }()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != 200 {
			t.Fatalf("webhook answered %d", c)
		}
	}
	testwait.Until(t, 20*time.Second, "3 succeeded actions", func() bool {
		items := f.actions("")
		if countState(items, "succeeded") == 3 {
			return true
		}
		t.Logf("actions: %v", items)
		return false
	})
	// Let the executor run a few more passes: nothing else may happen.
	testwait.Until(t, 10*time.Second, "bus drained", func() bool {
		return metricValue(t, f, "responder_bus_pending_messages") == 0
	})
	items := f.actions("")
	if len(items) != 3 {
		t.Fatalf("actions = %d, want 3: %v", len(items), items)
	}
	calls := f.sink.Calls()
	pods := map[string]int{}
	keys := map[string]bool{}
	for _, c := range calls {
		pods[fmt.Sprint(c.Body["pod"])]++
		keys[c.Key] = true
	}
	if len(calls) != 3 || pods["checkout-1"] != 1 || pods["checkout-2"] != 1 || pods["checkout-3"] != 1 || len(keys) != 3 {
		t.Fatalf("sink calls = %+v", calls)
	}
	for _, field := range []string{"id", "incident_id", "rule", "handler", "step", "target", "params", "state", "reason", "attempt",
		"approved_by", "created_at", "started_at", "finished_at", "error"} {
		if _, ok := items[0][field]; !ok {
			t.Errorf("action JSON lacks %q: %v", field, items[0])
		}
	}
	code, b := f.do(http.MethodGet, "/api/v1/incidents?state=firing", readToken, nil)
	if code != 200 || !strings.Contains(string(b), `"fingerprint"`) {
		t.Fatalf("incidents with the read token: %d %s", code, b)
	}
}

// metricValue sums every series of a metric in the app's registry.
func metricValue(t *testing.T, f *fixture, name string) float64 {
	t.Helper()
	mfs, err := f.app.Registry().Gather()
	must(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		var v float64
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				v += m.GetGauge().GetValue()
			case m.Counter != nil:
				v += m.GetCounter().GetValue()
			}
		}
		return v
	}
	t.Fatalf("metric %s not found", name)
	return 0
}

func TestAPIAuth(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/actions", "", 401},
		{"GET", "/api/v1/actions", "wrong", 401},
		{"GET", "/api/v1/actions", readToken, 200},
		{"GET", "/api/v1/actions", adminToken, 200},
		{"GET", "/api/v1/audit", readToken, 200},
		{"GET", "/api/v1/incidents/999", adminToken, 404},
		{"GET", "/api/v1/incidents/abc", adminToken, 400},
		{"GET", "/api/v1/actions?limit=0", adminToken, 400},
		{"GET", "/api/v1/actions?cursor=zz", adminToken, 400},
		{"GET", "/api/v1/status", readToken, 200},
		{"POST", "/-/reload", readToken, 403},
		{"POST", "/-/reload", "", 401},
		{"POST", "/-/reload", adminToken, 200},
		{"GET", "/livez", "", 200},
		{"GET", "/healthz", "", 200},
		{"GET", "/readyz", "", 200},
		{"GET", "/metrics", "", 200},
	} {
		t.Run(tc.method+tc.path+"/"+tc.token, func(t *testing.T) {
			if code, b := f.do(tc.method, tc.path, tc.token, nil); code != tc.want {
				t.Fatalf("%s %s = %d, want %d: %s", tc.method, tc.path, code, tc.want, b)
			}
		})
	}
}

func TestBusDownAnswers503ThenProcessesOnce(t *testing.T) {
	ns := bustest.Start(t)
	f := startApp(t, fixtureOpts{natsURL: ns.URL()})
	body := payload("firing", time.Now().Add(-time.Minute).UTC().Truncate(time.Second), "cart-1")
	ns.Shutdown()
	if code := f.post(body); code != http.StatusServiceUnavailable {
		t.Fatalf("bus down: webhook answered %d, want 503", code)
	}
	testwait.Until(t, 10*time.Second, "/readyz to fail", func() bool { c, _ := f.do("GET", "/readyz", "", nil); return c == 503 })
	ns.Restart()
	testwait.Until(t, 20*time.Second, "webhook 200 after the bus is back", func() bool { return f.post(body) == 200 })
	if code := f.post(body); code != 200 { // Alertmanager's retry of the same group
		t.Fatalf("second post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "1 succeeded action", func() bool { return countState(f.actions(""), "succeeded") == 1 })
	testwait.Until(t, 10*time.Second, "/readyz ok", func() bool { c, _ := f.do("GET", "/readyz", "", nil); return c == 200 })
	if n := len(f.actions("")); n != 1 {
		t.Fatalf("actions = %d, want 1", n)
	}
	if n := len(f.sink.Calls()); n != 1 {
		t.Fatalf("sink calls = %d, want 1", n)
	}
}

func TestStoreDownMessagesWait(t *testing.T) {
	pg := pgtest.StartServer(t)
	db := pg.CreateDatabase(t, "responder")
	f := startApp(t, fixtureOpts{dbURL: db})
	pg.Stop(t)
	body := payload("firing", time.Now().Add(-time.Minute).UTC().Truncate(time.Second), "cart-1", "cart-2")
	if code := f.post(body); code != 200 {
		t.Fatalf("store down: webhook answered %d, want 200 (the bus holds the alerts)", code)
	}
	f.waitStoreDegraded(15 * time.Second)
	pg.Start(t)
	testwait.Until(t, 30*time.Second, "2 succeeded actions after the store is back", func() bool {
		c, b := f.do("GET", "/api/v1/actions?state=succeeded", adminToken, nil)
		return c == 200 && strings.Count(string(b), `"state": "succeeded"`) == 2
	})
	f.waitStoreOK(15 * time.Second)
	if n := len(f.sink.Calls()); n != 2 {
		t.Fatalf("sink calls = %d, want 2", n)
	}
}

func TestReloadKeepsLastGoodRules(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	rulesFile := filepath.Join(f.dir, "rules", "pods.yml")
	good, err := os.ReadFile(rulesFile)
	must(t, err)
	must(t, os.WriteFile(rulesFile, []byte("rules:\n  - name: broken\n    when: alert.nmae == 1\n    actions: []\n"), 0o644))
	code, b := f.do("POST", "/-/reload", adminToken, nil)
	if code != 400 || !strings.Contains(string(b), "pods.yml:") {
		t.Fatalf("bad reload: %d %s (want 400 naming file:line)", code, b)
	}
	if v := metricValue(t, f, "responder_config_last_reload_successful"); v != 0 {
		t.Fatalf("config_last_reload_successful = %v after a bad reload", v)
	}
	// The last good rules still act.
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "api-1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the old rule to act", func() bool { return countState(f.actions(""), "succeeded") == 1 })
	must(t, os.WriteFile(rulesFile, good, 0o644))
	if code, b := f.do("POST", "/-/reload", adminToken, nil); code != 200 {
		t.Fatalf("good reload: %d %s", code, b)
	}
	if v := metricValue(t, f, "responder_config_last_reload_successful"); v != 1 {
		t.Fatalf("config_last_reload_successful = %v after a good reload", v)
	}
}

func TestRefusesToStartWithoutTokens(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "responder.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("database: {url: %q}\n", pgtest.NewDatabase(t))), 0o600))
	_, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: "127.0.0.1:0", StoragePath: dir})
	if err == nil || !strings.Contains(err.Error(), "--web.no-auth") {
		t.Fatalf("err = %v, want a refusal naming --web.no-auth", err)
	}
}

func TestDryRunRecordsWithoutCalling(t *testing.T) {
	f := startApp(t, fixtureOpts{dryRun: true})
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "web-9")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "a dry_run action", func() bool { return countState(f.actions(""), "dry_run") == 1 })
	if n := len(f.sink.Calls()); n != 0 {
		t.Fatalf("dry run called the sink %d times", n)
	}
}

func TestInvalidAlertIsAuditedAndTheRestAccepted(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	body, err := os.ReadFile("../testdata/alerts/alertmanager-invalid-alert-among-valid.json")
	must(t, err)
	code, resp := f.do(http.MethodPost, "/webhook/alertmanager", hookToken, body)
	if code != 200 || !strings.Contains(string(resp), `"rejected":1`) {
		t.Fatalf("webhook: %d %s", code, resp)
	}
	if v := metricValue(t, f, "responder_alerts_rejected_total"); v != 1 {
		t.Fatalf("alerts_rejected_total = %v, want 1", v)
	}
	testwait.Until(t, 10*time.Second, "the rejection in the audit trail", func() bool {
		c, b := f.do(http.MethodGet, "/api/v1/audit", readToken, nil)
		return c == 200 && strings.Contains(string(b), `"kind": "alert_rejected"`) && strings.Contains(string(b), `"reason": "missing_alertname"`)
	})
}

func TestApproveDenyAndPauseThroughTheAPI(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	rules := fmt.Sprintf(`
rules:
  - name: careful
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        approval: required
        approvals_required: 2
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
`, f.sink.HostPort())
	must(t, os.WriteFile(filepath.Join(f.dir, "rules", "pods.yml"), []byte(rules), 0o644))
	if code, b := f.do("POST", "/-/reload", adminToken, nil); code != 200 {
		t.Fatalf("reload: %d %s", code, b)
	}
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "a", "b")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 10*time.Second, "2 actions awaiting approval", func() bool { return countState(f.actions(""), "awaiting_approval") == 2 })
	ids := map[string]int{}
	for _, it := range f.actions("") {
		ids[fmt.Sprint(it["params"].(map[string]any)["url"])] = int(it["id"].(float64))
	}
	idA := ids["http://"+f.sink.HostPort()+"/hooks/restart/a"]
	idB := ids["http://"+f.sink.HostPort()+"/hooks/restart/b"]
	approve := func(id int, token, by string) (int, string) {
		code, b := f.do("POST", fmt.Sprintf("/api/v1/actions/%d/approve", id), token, []byte(`{"by":"`+by+`"}`))
		return code, string(b)
	}
	if code, b := approve(idA, readToken, "alice"); code != 403 {
		t.Fatalf("approve with the read token: %d %s", code, b)
	}
	if code, b := approve(idA, adminToken, "alice"); code != 200 || !strings.Contains(b, `"awaiting_approval"`) {
		t.Fatalf("first approval: %d %s", code, b)
	}
	if code, b := approve(idA, adminToken, "alice"); code != 200 || !strings.Contains(b, `"replay": true`) {
		t.Fatalf("replayed approval: %d %s", code, b)
	}
	if code, b := approve(idA, adminToken, "bob"); code != 200 || !strings.Contains(b, `"approved_by": "api:alice,api:bob"`) {
		t.Fatalf("second approver: %d %s", code, b)
	}
	if code, b := f.do("POST", fmt.Sprintf("/api/v1/actions/%d/deny", idB), adminToken, []byte(`{"by":"carol"}`)); code != 200 || !strings.Contains(string(b), `"denied"`) {
		t.Fatalf("deny: %d %s", code, b)
	}
	testwait.Until(t, 10*time.Second, "the approved action to run", func() bool { return len(f.sink.Calls()) == 1 })
	if code, _ := approve(idB, adminToken, "dave"); code != 409 {
		t.Fatalf("approving a denied action: %d, want 409", code)
	}
	if code, _ := approve(99999, adminToken, "dave"); code != 404 {
		t.Fatalf("approving a missing action: %d, want 404", code)
	}

	// Pause: the status shows who and until when; resume clears it.
	if code, b := f.do("POST", "/api/v1/pause", adminToken, []byte(`{"duration":"30m","reason":"maintenance","by":"alice"}`)); code != 200 {
		t.Fatalf("pause: %d %s", code, b)
	}
	code, b := f.do("GET", "/api/v1/status", readToken, nil)
	if code != 200 || !strings.Contains(string(b), `"paused": true`) || !strings.Contains(string(b), `"by": "api:alice"`) || !strings.Contains(string(b), `"until": "`) {
		t.Fatalf("status while paused: %d %s", code, b)
	}
	var actor, via string
	must(t, f.app.Store().Pool().QueryRow(context.Background(),
		`SELECT actor, detail->>'via' FROM audit WHERE kind = 'control' AND reason = 'pause'`).Scan(&actor, &via))
	if actor != "api:alice" || via != "api" {
		t.Errorf("the pause is audited by %q via %q, want api:alice via api", actor, via)
	}
	if code, b := f.do("POST", "/api/v1/pause", adminToken, []byte(`{"duration":"soon"}`)); code != 400 {
		t.Fatalf("bad duration: %d %s", code, b)
	}
	if code, _ := f.do("POST", "/api/v1/resume", adminToken, nil); code != 200 {
		t.Fatalf("resume: %d", code)
	}
	if code, b := f.do("GET", "/api/v1/status", readToken, nil); !strings.Contains(string(b), `"paused": false`) {
		t.Fatalf("status after resume: %d %s", code, b)
	}
	if v := metricValue(t, f, "responder_api_unauthorized_total"); v < 1 {
		t.Fatalf("api_unauthorized_total = %v", v)
	}
}

func TestPauseThroughTheAPIStopsDisruptiveActionsOnly(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	rules := fmt.Sprintf(`
rules:
  - name: restart
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        params: {url: "http://%[1]s/hooks/page/{{ alert.labels.pod }}", class: notify}
      - handler: http.request
        params: {url: "http://%[1]s/hooks/restart/{{ alert.labels.pod }}"}
`, f.sink.HostPort())
	must(t, os.WriteFile(filepath.Join(f.dir, "rules", "pods.yml"), []byte(rules), 0o644))
	if code, b := f.do("POST", "/-/reload", adminToken, nil); code != 200 {
		t.Fatalf("reload: %d %s", code, b)
	}
	if code, b := f.do("POST", "/api/v1/pause", adminToken, []byte(`{"reason":"maintenance","by":"alice"}`)); code != 200 {
		t.Fatalf("pause: %d %s", code, b)
	}
	var pods []string
	for i := range 20 {
		pods = append(pods, fmt.Sprint("p", i))
	}
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), pods...)); code != 200 {
		t.Fatalf("post: %d", code)
	}
	var items []map[string]any
	defer func() {
		if t.Failed() {
			for _, a := range items {
				t.Logf("action %v %v %v %v %v", a["id"], a["target"], a["state"], a["reason"], a["error"])
			}
		}
	}()
	testwait.Until(t, 20*time.Second, "20 pages and 20 paused restarts", func() bool {
		items = f.actions("?limit=1000")
		return countState(items, "succeeded") == 20 && countState(items, "skipped") == 20
	})
	for _, c := range f.sink.Calls() {
		if strings.Contains(c.Path, "/restart/") {
			t.Fatalf("a disruptive action ran while paused: %s", c.Path)
		}
	}
	// From the store: no disruptive action started after the pause row was written.
	var late int
	must(t, f.app.Store().Pool().QueryRow(context.Background(), `
SELECT count(*) FROM actions a, pause p WHERE a.class = 'disruptive' AND a.started_at >= p.at`).Scan(&late))
	if late != 0 {
		t.Fatalf("%d disruptive actions started after the pause committed", late)
	}
	if code, _ := f.do("POST", "/api/v1/resume", adminToken, nil); code != 200 {
		t.Fatalf("resume: %d", code)
	}
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "after")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the restart after resume", func() bool {
		for _, c := range f.sink.Calls() {
			if c.Path == "/hooks/restart/after" {
				return true
			}
		}
		return false
	})
	restarts := 0
	for _, c := range f.sink.Calls() {
		if strings.Contains(c.Path, "/restart/") {
			restarts++
		}
	}
	if restarts != 1 {
		t.Fatalf("restarts after resume = %d, want 1 (paused ones are not replayed)", restarts)
	}
}

func TestBreakerStatusMetricAndReset(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	ctx := context.Background()
	k := store.BreakerKey{Handler: "http.request", Scope: "airflow.internal:8080"}
	must(t, f.app.Store().InTx(ctx, func(tx pgx.Tx) error {
		if _, err := f.app.Store().BreakerMachineTx(ctx, tx, k, time.Now()); err != nil {
			return err
		}
		return f.app.Store().SetBreakerTx(ctx, tx, k, store.BreakerOpen, 1, time.Now())
	}))
	code, b := f.do("GET", "/api/v1/status", readToken, nil)
	if code != 200 || !strings.Contains(string(b), `"state": "open"`) {
		t.Fatalf("status: %d %s", code, b)
	}
	// The gauge is read in the background (every 100ms here).
	testwait.Until(t, 10*time.Second, "breaker_state 2 (open)", func() bool { return cachedMetric(t, f, "responder_breaker_state") == 2 })
	if code, _ := f.do("POST", "/api/v1/breakers/http.request/airflow.internal:8080/reset", readToken, nil); code != 403 {
		t.Fatalf("reset with the read token: %d", code)
	}
	if code, b := f.do("POST", "/api/v1/breakers/http.request/airflow.internal:8080/reset", adminToken, nil); code != 200 {
		t.Fatalf("reset: %d %s", code, b)
	}
	testwait.Until(t, 10*time.Second, "breaker_state 0 after the reset", func() bool { return cachedMetric(t, f, "responder_breaker_state") == 0 })
	if code, _ := f.do("POST", "/api/v1/breakers/http.request/nowhere/reset", adminToken, nil); code != 404 {
		t.Fatalf("reset of a missing breaker: %d", code)
	}
}

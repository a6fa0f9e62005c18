package main_test

// End-to-end tests of the built binary, driven only through the user-facing contract (flags,
// config keys, endpoints, JSON fields, metric names) against real servers: PostgreSQL from the
// local binaries, the embedded JetStream, and the real Alertmanager binary.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/source/alertmanager/amtest"
	"github.com/responder-sre/responder/store/pgtest"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "responder-e2e-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "responder")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build responder: %v\n%s", err, out)
		os.Exit(1)
	}
	code := pgtest.Run(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	hookToken  = "e2e-webhook-token"
	adminToken = "e2e-admin-token"
)

type sink struct {
	*httptest.Server
	mu    sync.Mutex
	calls map[string]int // pod → calls
	keys  map[string]int // Idempotency-Key → calls
	delay time.Duration
}

func newSink(t *testing.T, delay time.Duration) *sink {
	s := &sink{calls: map[string]int{}, keys: map[string]int{}, delay: delay}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct{ Pod string }
		_ = json.NewDecoder(r.Body).Decode(&body)
		// Counted on arrival: a request cut short by a crash may still have acted downstream.
		s.mu.Lock()
		s.calls[body.Pod]++
		s.keys[r.Header.Get("Idempotency-Key")]++
		s.mu.Unlock()
		if s.delay > 0 { // a slow downstream, so a crash lands mid-action
			select {
			case <-time.After(s.delay):
			case <-r.Context().Done():
			}
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *sink) snapshot() (map[string]int, map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, k := map[string]int{}, map[string]int{}
	for p, n := range s.calls {
		c[p] = n
	}
	for p, n := range s.keys {
		k[p] = n
	}
	return c, k
}

func (s *sink) hostPort() string { u, _ := url.Parse(s.URL); return u.Host }

// setup writes a config and rule file the way a user would, with token files.
// busSigningKey is bus.signing_key_file of the setups on an external bus; a test's raw publishes
// sign with it (signedMsg).
const busSigningKey = "0123456789abcdef0123456789abcdef-e2e-signing-key"

// signedMsg is a message on the alert subject signed as responder signs it, so that it gets as
// far as decoding.
func signedMsg(id string, data []byte) *nats.Msg {
	m := &nats.Msg{Subject: "responder.alerts", Data: data, Header: nats.Header{"Nats-Msg-Id": {id}}}
	bus.Sign([]byte(busSigningKey), m)
	return m
}

func setup(t *testing.T, s *sink, dbURL, extra string) string {
	t.Helper()
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("webhook-token", hookToken+"\n")
	write("api-token", adminToken+"\n")
	if strings.Contains(extra, "nats:\n  url: ") {
		// An external bus needs the signing key its replicas share.
		write("bus-signing-key", busSigningKey+"\n")
		if strings.Contains(extra, "\nbus:\n") {
			extra = strings.Replace(extra, "\nbus:\n", "\nbus:\n  signing_key_file: bus-signing-key\n", 1)
		} else {
			extra += "bus:\n  signing_key_file: bus-signing-key\n"
		}
	}
	write("responder.yml", fmt.Sprintf(`database:
  url: %s
webhook:
  bearer_token_file: webhook-token
api:
  token_file: api-token
rule_files: [rules.yml]
handlers:
  http:
    allowed_hosts: [%q]
%s`, dbURL, s.hostPort(), extra))
	write("rules.yml", fmt.Sprintf(`rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
          body: '{{ toJSON({pod: alert.labels.pod}) }}'
`, s.hostPort()))
	return dir
}

type proc struct {
	cmd  *exec.Cmd
	base string
	log  *bytes.Buffer
	mu   *sync.Mutex
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// serve starts `responder serve` and waits until /readyz answers 200.
func serve(t *testing.T, dir, storage, addr string, args ...string) *proc {
	t.Helper()
	p := startResponder(t, dir, storage, "http://"+addr, addr, args...)
	waitReady(t, p, "responder")
	return p
}

// waitReady waits until p's plain-HTTP /readyz answers 200, failing at once if p exits.
func waitReady(t *testing.T, p *proc, name string) {
	t.Helper()
	testwait.Until(t, 60*time.Second, name+" /readyz", func() bool {
		if p.cmd.ProcessState != nil {
			t.Fatalf("%s exited: %v", name, p.cmd.ProcessState)
		}
		resp, err := http.Get(p.base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
}

type action struct {
	ID      int64          `json:"id"`
	State   string         `json:"state"`
	Reason  string         `json:"reason"`
	Handler string         `json:"handler"`
	Params  map[string]any `json:"params"`
}

func (p *proc) get(t *testing.T, path string, out any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, p.base+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", path, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("GET %s: %v: %s", path, err, b)
	}
}

func (p *proc) actions(t *testing.T) []action {
	t.Helper()
	var all []action
	cursor := ""
	for {
		var l struct {
			Items      []action `json:"items"`
			NextCursor string   `json:"next_cursor"`
		}
		p.get(t, "/api/v1/actions?limit=1000&cursor="+cursor, &l)
		all = append(all, l.Items...)
		if l.NextCursor == "" {
			return all
		}
		cursor = l.NextCursor
	}
}

// metric reads one sample from /metrics.
func (p *proc) metric(t *testing.T, series string) float64 {
	t.Helper()
	resp, err := http.Get(p.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("metric %s: %q: %v", series, v, err)
			}
			return f
		}
	}
	return -1
}

func TestAlertmanagerEndToEnd(t *testing.T) {
	s := newSink(t, 0)
	dir := setup(t, s, pgtest.NewDatabase(t), "")
	addr := freePort(t)
	p := serve(t, dir, t.TempDir(), addr)
	am := amtest.Start(t, amtest.Config{WebhookURL: p.base + "/webhook/alertmanager", BearerToken: hookToken,
		GroupWait: 100 * time.Millisecond, GroupInterval: 500 * time.Millisecond, RepeatInterval: time.Second, SendResolved: true, MaxAlerts: 1000})
	starts := time.Now().Add(-time.Minute).UTC()
	var alerts []amtest.PostableAlert
	for _, pod := range []string{"checkout-1", "checkout-2", "checkout-3"} {
		alerts = append(alerts, amtest.PostableAlert{Labels: map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod},
			StartsAt: starts})
	}
	am.PostAlerts(t, alerts...)
	testwait.Until(t, 30*time.Second, "3 calls at the sink", func() bool { c, _ := s.snapshot(); return len(c) == 3 })
	// Alertmanager keeps re-sending the group (repeat_interval 1s): wait for several more deliveries.
	ok := p.metric(t, `responder_webhook_requests_total{code="200"}`)
	testwait.Until(t, 30*time.Second, "Alertmanager re-sends", func() bool {
		return p.metric(t, `responder_webhook_requests_total{code="200"}`) >= ok+3
	})
	calls, keys := s.snapshot()
	for pod, n := range calls {
		if n != 1 {
			t.Errorf("pod %s: %d http.request calls, want exactly 1", pod, n)
		}
	}
	if len(keys) != 3 {
		t.Errorf("idempotency keys = %v", keys)
	}
	acts := p.actions(t)
	if len(acts) != 3 {
		t.Fatalf("actions = %+v", acts)
	}
	for _, a := range acts {
		if a.State != "succeeded" || a.Handler != "http.request" {
			t.Errorf("action %+v", a)
		}
	}
	// Resolve: Alertmanager sends the resolved group (send_resolved), the incidents resolve, nothing re-runs.
	for i := range alerts {
		alerts[i].EndsAt = time.Now().Add(-time.Second).UTC()
	}
	am.PostAlerts(t, alerts...)
	testwait.Until(t, 30*time.Second, "3 resolved incidents", func() bool {
		var l struct{ Items []struct{ State string } }
		p.get(t, "/api/v1/incidents?state=resolved", &l)
		return len(l.Items) == 3
	})
	if n := len(p.actions(t)); n != 3 {
		t.Fatalf("actions after resolve = %d", n)
	}
}

func TestCrashMidStreamLosesNothingRunsNothingTwice(t *testing.T) {
	s := newSink(t, 150*time.Millisecond)
	db := pgtest.NewDatabase(t)
	dir := setup(t, s, db, "safety:\n  max_concurrent_actions: 4\n  lease_duration: 2s\n")
	storage := t.TempDir()
	addr := freePort(t)
	a := serve(t, dir, storage, addr)

	// 30 requests of 4 alerts each, posted the way Alertmanager would; remember what got a 200.
	accepted := map[string]bool{}
	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	for r := range 30 {
		var as []map[string]any
		for i := range 4 {
			as = append(as, map[string]any{"status": "firing", "startsAt": starts, "endsAt": time.Time{},
				"labels": map[string]string{"alertname": "KubePodCrashLooping", "pod": fmt.Sprintf("p-%d-%d", r, i)}})
		}
		body, _ := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "responder", "groupKey": fmt.Sprint(r), "alerts": as})
		req, _ := http.NewRequest(http.MethodPost, a.base+"/webhook/alertmanager", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+hookToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 200 {
			for i := range 4 {
				accepted[fmt.Sprintf("p-%d-%d", r, i)] = true
			}
		}
	}
	testwait.Until(t, 30*time.Second, "some actions to complete", func() bool { c, _ := s.snapshot(); return len(c) >= 10 })
	if err := a.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = a.cmd.Wait()
	before, _ := s.snapshot()

	b := serve(t, dir, storage, addr)
	testwait.Until(t, 90*time.Second, "every action to reach a final state", func() bool {
		acts := b.actions(t)
		if len(acts) < len(accepted) {
			return false
		}
		for _, x := range acts {
			if x.State != "succeeded" && x.State != "unknown" {
				return false
			}
		}
		return true
	})
	acts := b.actions(t)
	seen := map[string]string{}
	unknown := 0
	for _, x := range acts {
		pod := fmt.Sprint(x.Params["body"])
		seen[pod] = x.State
		if x.State == "unknown" {
			unknown++
			if x.Reason != "lease_expired" {
				t.Errorf("unknown action with reason %q", x.Reason)
			}
		}
	}
	for pod := range accepted {
		if _, ok := seen[fmt.Sprintf(`{"pod":"%s"}`, pod)]; !ok {
			t.Errorf("alert for %s was answered 200 but has no action", pod)
		}
	}
	if len(acts) != len(accepted) {
		t.Errorf("actions = %d, accepted alerts = %d", len(acts), len(accepted))
	}
	calls, keys := s.snapshot()
	for pod, n := range calls {
		if n > 1 {
			t.Errorf("pod %s was acted on %d times", pod, n)
		}
	}
	for k, n := range keys {
		if n > 1 {
			t.Errorf("idempotency key %s used %d times", k, n)
		}
	}
	t.Logf("accepted %d alerts; %d calls before the kill, %d after restart; %d actions unknown (running at the kill)",
		len(accepted), len(before), len(calls), unknown)
}

func run(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), code
}

func TestCLIContract(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(bad, []byte("rules:\n  - name: x\n    when: alert.lables.pod == \"a\"\n    actions:\n      - handler: http.requets\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	pager := filepath.Join(t.TempDir(), "page.yml") // every handler serve has, e.g. page.webhook, is known
	if err := os.WriteFile(pager, []byte("rules:\n  - name: p\n    when: alert.name == \"X\"\n    actions:\n      - handler: page.webhook\n        params: {summary: \"{{ alert.name }}\"}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	kube := filepath.Join(t.TempDir(), "kube.yml")
	if err := os.WriteFile(kube, []byte("handlers:\n  kubernetes: {namespaces: [shop]}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	noTokens := filepath.Join(t.TempDir(), "responder.yml")
	if err := os.WriteFile(noTokens, []byte("database: {url: postgres://127.0.0.1:1/x}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"rules check on the examples", []string{"rules", "check", "--config.file=../../examples/responder.yml"}, 0, []string{"SUCCESS: 3 rules"}},
		{"rules check knows every handler", []string{"rules", "check", pager}, 0, []string{"SUCCESS: 1 rules"}},
		{"rules check on the runbook pack", []string{"rules", "check", "--config.file=../../examples/runbook/responder.yml"}, 0, []string{"SUCCESS: 15 rules in 8 files"}},
		{"rules test on the runbook pack", []string{"rules", "test", "--config.file=../../examples/runbook/handlers.yml", "../../examples/runbook/runbook_test.yml", "../../examples/runbook/kubernetes_test.yml", "../../examples/runbook/variants/slack_test.yml", "../../examples/runbook/variants/notify_test.yml",
			"../../examples/runbook/backups_test.yml", "../../examples/runbook/vault_test.yml", "../../examples/runbook/celery_test.yml",
			"../../examples/runbook/services_test.yml", "../../examples/runbook/statuspage_test.yml"}, 0, []string{"Unit Testing: ../../examples/runbook/kubernetes_test.yml\n  SUCCESS", "Unit Testing: ../../examples/runbook/variants/slack_test.yml\n  SUCCESS",
			"Unit Testing: ../../examples/runbook/variants/notify_test.yml\n  SUCCESS", "Unit Testing: ../../examples/runbook/backups_test.yml\n  SUCCESS",
			"Unit Testing: ../../examples/runbook/vault_test.yml\n  SUCCESS", "Unit Testing: ../../examples/runbook/celery_test.yml\n  SUCCESS"}},
		{"rules test reports a failure", []string{"rules", "test", "--config.file=../../ruletest/testdata/conf.yml", "../../ruletest/testdata/fail_test.yml"}, 1, []string{"FAILED:"}},
		{"rbac prints a Role per namespace", []string{"rbac", "--config.file=" + kube}, 0, []string{"kind: Role\n", "namespace: shop", "pods/eviction", "kind: RoleBinding"}},
		{"rbac without namespaces", []string{"rbac", "--config.file=" + noTokens}, 1, []string{"handlers.kubernetes.namespaces is empty"}},
		{"rules check names file:line", []string{"rules", "check", bad}, 1, []string{bad + ":3:", "alert has no field lables", bad + ":5:", `unknown handler "http.requets"`}},
		{"version", []string{"version"}, 0, []string{"responder, version"}},
		{"serve refuses without tokens", []string{"serve", "--config.file=" + noTokens, "--web.listen-address=127.0.0.1:0"}, 1, []string{"--web.no-auth"}},
		{"serve rejects an unknown config key", []string{"serve", "--config.file=" + bad}, 1, []string{bad + ":1:"}},
		{"unknown flag", []string{"serve", "--web.listen-adress=:1"}, 2, []string{"unknown long flag"}},
		{"bad web config refused before starting", []string{"serve", "--config.file=../../examples/responder.yml", "--web.config.file=" + bad}, 1, []string{"--web.config.file"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, code := run(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d:\n%s", code, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

func TestSendAndSIGHUPReload(t *testing.T) {
	s := newSink(t, 0)
	dir := setup(t, s, pgtest.NewDatabase(t), "")
	p := serve(t, dir, t.TempDir(), freePort(t))
	out, code := run(t, "send", "--url", p.base+"/webhook/alertmanager", "--bearer-token-file", filepath.Join(dir, "webhook-token"),
		"../../testdata/alerts/alertmanager-kube-pod-crashlooping.json")
	if code != 0 || !strings.Contains(out, "HTTP 200") {
		t.Fatalf("send: exit %d: %s", code, out)
	}
	testwait.Until(t, 30*time.Second, "the crash-looping pod's action", func() bool {
		acts := p.actions(t)
		return len(acts) == 1 && acts[0].State == "succeeded"
	})
	out, code = run(t, "send", "--url", p.base+"/webhook/alertmanager", "../../testdata/alerts/alertmanager-kube-pod-crashlooping.json")
	if code != 1 || !strings.Contains(out, "HTTP 401") {
		t.Fatalf("send without a token: exit %d: %s", code, out)
	}
	// A broken rule file and SIGHUP: the last good rules stay, the metric says the reload failed.
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte("rules: [{name: x, when: 'nope('}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 10*time.Second, "config_last_reload_successful 0", func() bool {
		return p.metric(t, "responder_config_last_reload_successful") == 0
	})
	var st struct {
		Rules int `json:"rules"`
	}
	p.get(t, "/api/v1/status", &st)
	if st.Rules != 1 {
		t.Fatalf("rules after a bad reload = %d, want the last good 1", st.Rules)
	}
}

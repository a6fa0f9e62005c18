package app_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slack-go/slack/slacktest"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// reloadStatus is what GET /api/v1/status says of the rules and the last reload.
type reloadStatus struct {
	Rules      int    `json:"rules"`
	RuleHash   string `json:"rule_hash"`
	Paused     bool   `json:"paused"`
	LastReload struct {
		Successful bool   `json:"successful"`
		Error      string `json:"error"`
	} `json:"last_reload"`
	Budgets []struct {
		Name string `json:"name"`
		Max  int    `json:"max"`
	} `json:"budgets"`
}

func (f *fixture) status() reloadStatus {
	f.t.Helper()
	code, b := f.do("GET", "/api/v1/status", readToken, nil)
	if code != 200 {
		f.t.Fatalf("status: %d %s", code, b)
	}
	var st reloadStatus
	must(f.t, json.Unmarshal(b, &st))
	return st
}

// reloadAnswer is POST /-/reload's answer.
type reloadAnswer struct {
	Code    int
	Error   string   `json:"error"`
	Changed []string `json:"changed"`
	Status  string   `json:"status"`
}

// reloadWith writes o as the configuration (and its rule file) and reloads it through the API.
func (f *fixture) reloadWith(o fixtureOpts) reloadAnswer {
	f.t.Helper()
	writeConfig(f.t, f.dir, f.sink, o)
	return f.reloadNow()
}

func (f *fixture) reloadNow() reloadAnswer {
	f.t.Helper()
	code, b := f.do("POST", "/-/reload", adminToken, nil)
	r := reloadAnswer{Code: code}
	must(f.t, json.Unmarshal(b, &r))
	return r
}

func (f *fixture) mustReload(o fixtureOpts) []string {
	f.t.Helper()
	r := f.reloadWith(o)
	if r.Code != 200 {
		f.t.Fatalf("reload: %d %s", r.Code, r.Error)
	}
	return r.Changed
}

// pathsOf returns the paths the sink received, in order.
func pathsOf(s *sink) []string {
	var out []string
	for _, c := range s.Calls() {
		out = append(out, c.Path)
	}
	return out
}

func (f *fixture) fire(pods ...string) {
	f.t.Helper()
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), pods...)); code != 200 {
		f.t.Fatalf("post: %d", code)
	}
}

// actionOf returns the action whose url ends in /pod.
func (f *fixture) actionOf(pod string) map[string]any {
	for _, a := range f.actions("") {
		if u, _ := a["params"].(map[string]any)["url"].(string); strings.HasSuffix(u, "/"+pod) {
			return a
		}
	}
	return nil
}

func (f *fixture) waitAction(pod, state string) map[string]any {
	f.t.Helper()
	var got map[string]any
	testwait.Until(f.t, 30*time.Second, "the action of "+pod+" "+state, func() bool {
		got = f.actionOf(pod)
		return got != nil && got["state"] == state
	})
	return got
}

// restartRules is a rule that posts to host/hooks/restart/POD, optionally with more params.
func restartRules(host, more string) func(*sink) string {
	return func(*sink) string {
		return fmt.Sprintf(`
rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%s/hooks/restart/{{ alert.labels.pod }}"%s}
`, host, more)
	}
}

// TestReloadAppliesEachSection: a reload changes what runs, section by section, each observed
// through what responder does after it.
func TestReloadAppliesEachSection(t *testing.T) {
	for _, tc := range []struct {
		name string
		// run starts responder with a configuration, changes the section and reloads (f.reloadWith),
		// and observes the change.
		run func(t *testing.T, o fixtureOpts)
	}{
		{"an allowed host added", reloadAllowedHost},
		{"a rotated secret", reloadSecret},
		{"a budget", reloadBudget},
		{"api and webhook tokens", reloadTokens},
		{"safety.paused", reloadPaused},
		{"a console approver", reloadWebApprover},
		{"a slack approver and signing secret", reloadSlack},
		{"probes added, changed and removed", reloadProbes},
		{"a handler setting: running actions keep theirs", reloadHandlerSetting},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.run(t, fixtureOpts{dbURL: pgtest.NewDatabase(t)})
		})
	}
}

// reloadAllowedHost: a rule calling a host not allowed is refused (the old rules stay); with the
// host added to handlers.http.allowed_hosts the same reload succeeds, and the new rule calls it.
func reloadAllowedHost(t *testing.T, o fixtureOpts) {
	other := newSink(t)
	f := startApp(t, o)
	before := f.status()
	next := o
	next.rules = restartRules(other.HostPort(), "")
	r := f.reloadWith(next)
	if r.Code != 400 || !strings.Contains(r.Error, "allowed_hosts") {
		t.Fatalf("a rule calling a host not allowed: %d %q", r.Code, r.Error)
	}
	if st := f.status(); st.RuleHash != before.RuleHash || st.LastReload.Successful {
		t.Fatalf("after a failed reload: %+v (before %+v)", st, before)
	}
	next.hosts = []string{other.HostPort()}
	if changed := f.mustReload(next); !slices.Equal(changed, []string{"handlers.http.allowed_hosts"}) {
		t.Errorf("changed = %v", changed)
	}
	f.fire("a")
	f.waitAction("a", "succeeded")
	if got := pathsOf(other); !slices.Equal(got, []string{"/hooks/restart/a"}) || len(f.sink.Calls()) != 0 {
		t.Fatalf("the new host got %v, the old one %v", got, pathsOf(f.sink))
	}
}

// reloadSecret: secrets.NAME pointed at another file by a reload is what http.request sends
// next; a secret's file rotated in place is picked up at once, without a reload.
func reloadSecret(t *testing.T, o fixtureOpts) {
	o.files = map[string]string{"tok-a": "first\n", "tok-b": "second\n"}
	o.extra = "secrets: {tok: {file: tok-a}}\n"
	o.rules = func(s *sink) string {
		return restartRules(s.HostPort(), `, headers: {Authorization: 'Bearer {{ secret("tok") }}'}`)(s)
	}
	f := startApp(t, o)
	f.fire("a")
	f.waitAction("a", "succeeded")
	o.extra = "secrets: {tok: {file: tok-b}}\n"
	if changed := f.mustReload(o); !slices.Equal(changed, []string{"secrets.tok.file"}) {
		t.Errorf("changed = %v", changed)
	}
	f.fire("b")
	f.waitAction("b", "succeeded")
	must(t, os.WriteFile(filepath.Join(f.dir, "tok-b"), []byte("third\n"), 0o600))
	f.fire("c")
	f.waitAction("c", "succeeded")
	var auths []string
	for _, c := range f.sink.Calls() {
		auths = append(auths, c.Path+" "+c.Auth)
	}
	want := []string{"/hooks/restart/a Bearer first", "/hooks/restart/b Bearer second", "/hooks/restart/c Bearer third"}
	if !slices.Equal(auths, want) {
		t.Fatalf("the sink got %q, want %q", auths, want)
	}
}

// reloadBudget: a budget of one action is spent; raised to three by a reload, the next two run.
func reloadBudget(t *testing.T, o fixtureOpts) {
	budget := func(limit int) string {
		return fmt.Sprintf("safety: {budgets: [{name: restarts, match: http.request, per: global, max: %d, window: 1h}]}\n", limit)
	}
	o.extra = budget(1)
	f := startApp(t, o)
	f.fire("a", "b")
	testwait.UntilDetail(t, 30*time.Second, "one action run, one refused by the budget", func() (bool, string) {
		acts := f.actions("")
		var seen []string
		for _, a := range acts {
			seen = append(seen, fmt.Sprintf("%v %v %v", a["id"], a["state"], a["reason"]))
		}
		return countState(acts, "succeeded") == 1 && countState(acts, "skipped") == 1, fmt.Sprintf("actions %v", seen)
	})
	o.extra = budget(3)
	if changed := f.mustReload(o); !slices.Equal(changed, []string{"safety.budgets[0].max"}) {
		t.Errorf("changed = %v", changed)
	}
	if st := f.status(); len(st.Budgets) != 2 || st.Budgets[0].Max != 3 || st.Budgets[1].Name != "drills" || st.Budgets[1].Max != 10 {
		t.Errorf("status budgets = %+v; want restarts (max 3), then drills (max 10)", st.Budgets)
	}
	f.fire("c", "d")
	f.waitAction("c", "succeeded")
	f.waitAction("d", "succeeded")
	if n := len(f.sink.Calls()); n != 3 {
		t.Fatalf("sink calls = %d, want 3", n)
	}
}

// reloadTokens: a named API token removed is refused and one added is accepted; the webhook's
// token is rotated.
func reloadTokens(t *testing.T, o fixtureOpts) {
	o.api = ", tokens: [{name: ci, token_file: ci.token, role: read}]"
	o.files = map[string]string{"ci.token": ciToken + "\n", "ops.token": opsToken + "\n"}
	f := startApp(t, o)
	if code, _ := f.do("GET", "/api/v1/status", ciToken, nil); code != 200 {
		t.Fatalf("ci before: %d", code)
	}
	o.api = ", tokens: [{name: ops, token_file: ops.token, role: admin}]"
	o.hook = "the-next-webhook-token"
	changed := f.mustReload(o)
	if !slices.Equal(changed, []string{"api.tokens[0].name", "api.tokens[0].role", "api.tokens[0].token", "api.tokens[0].token_file", "webhook.bearer_token[0]"}) {
		t.Errorf("changed = %v", changed)
	}
	for _, tc := range []struct {
		method, path, token string
		want                int
	}{
		{"GET", "/api/v1/status", ciToken, 401},
		{"GET", "/api/v1/status", opsToken, 200},
		{"POST", "/api/v1/resume", opsToken, 200},
		{"POST", "/webhook/alertmanager", hookToken, 401},
		{"POST", "/webhook/alertmanager", "the-next-webhook-token", 200},
	} {
		var body []byte
		if tc.path == "/webhook/alertmanager" {
			body = payload("firing", time.Now().UTC().Truncate(time.Second), "a")
		}
		if code, b := f.do(tc.method, tc.path, tc.token, body); code != tc.want {
			t.Errorf("%s %s with %s: %d %s, want %d", tc.method, tc.path, tc.token, code, b, tc.want)
		}
	}
	f.waitAction("a", "succeeded")
}

// reloadPaused: safety.paused set by a reload skips the next disruptive action and shows in the
// status; unset again, actions run.
func reloadPaused(t *testing.T, o fixtureOpts) {
	f := startApp(t, o)
	paused := o
	paused.extra = "safety: {paused: true}\n"
	if changed := f.mustReload(paused); !slices.Equal(changed, []string{"safety.paused"}) {
		t.Errorf("changed = %v", changed)
	}
	if !f.status().Paused {
		t.Error("the status does not say paused")
	}
	f.fire("a")
	if a := f.waitAction("a", "skipped"); a["reason"] != "paused" {
		t.Fatalf("the action was skipped as %v, want paused", a["reason"])
	}
	f.mustReload(o)
	f.fire("b")
	f.waitAction("b", "succeeded")
	if got := pathsOf(f.sink); !slices.Equal(got, []string{"/hooks/restart/b"}) {
		t.Fatalf("sink got %v", got)
	}
}

// reloadWebApprover: a console admin who is not an approver may not approve; named in
// approvals.approvers.web by a reload, she approves, with the forms of the console she had
// open (the reload keeps the CSRF key).
func reloadWebApprover(t *testing.T, o fixtureOpts) {
	base := consoleOpts(t)
	users, _, _ := strings.Cut(base.extra, "approvals:")
	o.extra = users
	o.rules = func(s *sink) string { return restartRules(s.HostPort(), "")(s) + "        approval: required\n" }
	f := startApp(t, o)
	f.fire("a")
	a := f.waitAction("a", "awaiting_approval")
	id := int(a["id"].(float64))
	br := newBrowser(t, f, consoleUser, consolePassword)
	_, page := br.get("/ui/status")
	tok := br.csrf(page)
	approve := fmt.Sprintf("/ui/actions/%d/approve", id)
	if code, page := br.post(approve, url.Values{"csrf": {tok}, "back": {"/ui/"}}); code != 403 {
		t.Fatalf("approve by a console user who is not an approver: %d\n%s", code, page)
	}
	logins := metricValue(t, f, "responder_web_logins_total")
	o.extra = base.extra
	if changed := f.mustReload(o); !slices.Equal(changed, []string{"approvals.approvers.web"}) {
		t.Errorf("changed = %v", changed)
	}
	if v := metricValue(t, f, "responder_web_logins_total"); v != logins || v < 1 {
		t.Errorf("responder_web_logins_total = %v after the reload, want the %v before it", v, logins)
	}
	if code, page := br.post(approve, url.Values{"csrf": {tok}, "back": {"/ui/"}}); code != 200 || !strings.Contains(page, "approved") {
		t.Fatalf("approve after the reload: %d\n%s", code, page)
	}
	f.waitAction("a", "succeeded")
}

// reloadSlack: a Slack user added to slack.approvers by a reload may approve, with a command
// signed with the signing secret the reload read.
func reloadSlack(t *testing.T, o fixtureOpts) {
	const newcomer, nextSecret = "U0NEWCOMER", "the-next-signing-secret-0123456789"
	srv := slacktest.NewTestServer(func(c slacktest.Customize) {
		rec := &slackRecorder{}
		c.Handle("/chat.postMessage", rec.chat("chat.postMessage"))
		c.Handle("/chat.update", rec.chat("chat.update"))
	})
	srv.Start()
	t.Cleanup(srv.Stop)
	slackSection := func(approvers string) string {
		return fmt.Sprintf("slack: {bot_token_file: bot, signing_secret_file: signing, channel: %q, api_url: %q, approvers: {users: [%s]}}\n",
			slackChannel, srv.GetAPIURL(), approvers)
	}
	o.files = map[string]string{"bot": "xoxb-e2e\n", "signing": slackSecret + "\n"}
	o.extra = slackSection(slackUser)
	o.rules = func(s *sink) string { return restartRules(s.HostPort(), "")(s) + "        approval: required\n" }
	f := startApp(t, o)
	f.fire("a")
	id := int(f.waitAction("a", "awaiting_approval")["id"].(float64))
	command := func(secret string, at time.Time) string {
		body := url.Values{"command": {"/responder"}, "text": {fmt.Sprint("approve ", id)}, "user_id": {newcomer}}.Encode()
		req, err := http.NewRequest("POST", f.base+"/slack/commands", strings.NewReader(body))
		must(t, err)
		req.Header = slackSignWith(secret, body, at)
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		defer resp.Body.Close()
		var answer struct{ Text string }
		_ = json.NewDecoder(resp.Body).Decode(&answer)
		return fmt.Sprint(resp.StatusCode, " ", answer.Text)
	}
	if got := command(slackSecret, time.Now()); !strings.Contains(got, "Only approvers") {
		t.Fatalf("a command from a user who is not an approver: %s", got)
	}
	o.files["signing"] = nextSecret + "\n"
	o.extra = slackSection(slackUser + ", " + newcomer)
	if changed := f.mustReload(o); !slices.Equal(changed, []string{"slack.approvers.users", "slack.signing_secret"}) {
		t.Errorf("changed = %v", changed)
	}
	if got := command(slackSecret, time.Now()); !strings.HasPrefix(got, "401") {
		t.Fatalf("a command signed with the old secret: %s", got)
	}
	if got := command(nextSecret, time.Now().Add(time.Second)); !strings.Contains(got, "You approved") {
		t.Fatalf("a command from the new approver: %s", got)
	}
	f.waitAction("a", "succeeded")
}

// slackSignWith is slackSign with another signing secret.
func slackSignWith(secret, body string, at time.Time) http.Header {
	h := slackSign(body, at)
	m := hmac.New(sha256.New, []byte(secret))
	fmt.Fprintf(m, "v0:%s:%s", h.Get("X-Slack-Request-Timestamp"), body)
	h.Set("X-Slack-Signature", "v0="+hex.EncodeToString(m.Sum(nil)))
	return h
}

// target is a probe's target: it counts the requests it gets and answers 503 while down.
type target struct {
	*httptest.Server
	hits atomic.Int64
	down atomic.Bool
}

func newTarget(t *testing.T) *target {
	tg := &target{}
	tg.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		tg.hits.Add(1)
		if tg.down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	t.Cleanup(tg.Close)
	return tg
}

// reloadProbes: a probe changed by a reload continues its episode (one incident, one page); a
// probe added runs; a probe removed stops and its series are gone.
func reloadProbes(t *testing.T, o fixtureOpts) {
	kept, gone, added := newTarget(t), newTarget(t), newTarget(t)
	kept.down.Store(true)
	probe := func(name, interval string, tg *target) string {
		return fmt.Sprintf("  - {name: %s, interval: %s, http: {url: %q}}\n", name, interval, tg.URL)
	}
	o.extra = "probes:\n" + probe("kept", "200ms", kept) + probe("gone", "200ms", gone)
	o.rules = func(s *sink) string {
		return fmt.Sprintf(`
rules:
  - name: page-kept
    when: alert.source == "probe" && alert.name == "kept" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://%s/page/{{ alert.name }}", class: notify}
`, s.HostPort())
	}
	f := startApp(t, o)
	testwait.Until(t, 30*time.Second, "the page of the failing probe", func() bool { return len(f.sink.Calls()) == 1 })
	testwait.Until(t, 30*time.Second, "the probe to be removed to run", func() bool { return gone.hits.Load() >= 2 })
	o.extra = "probes:\n" + probe("kept", "300ms", kept) + probe("added", "200ms", added)
	if changed := f.mustReload(o); !slices.Equal(changed, []string{"probes[0].interval", "probes[0].timeout", "probes[1].http.url", "probes[1].name"}) {
		t.Errorf("changed = %v", changed)
	}
	goneHits, keptHits := gone.hits.Load(), kept.hits.Load()
	testwait.Until(t, 30*time.Second, "the probe added and the probe changed to run", func() bool {
		return added.hits.Load() >= 5 && kept.hits.Load() >= keptHits+5
	})
	if n := gone.hits.Load(); n > goneHits {
		t.Errorf("the removed probe ran %d more times after the reload", n-goneHits)
	}
	if n := len(f.sink.Calls()); n != 1 {
		t.Errorf("pages = %d, want 1: the changed probe continues its episode", n)
	}
	code, b := f.do("GET", "/api/v1/incidents", readToken, nil)
	if code != 200 || strings.Count(string(b), `"fingerprint"`) != 1 {
		t.Errorf("incidents: %d %s, want one", code, b)
	}
	mfs, err := f.app.Registry().Gather()
	must(t, err)
	var probes []string
	for _, mf := range mfs {
		if mf.GetName() != "responder_probe_success" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "probe" {
					probes = append(probes, l.GetValue())
				}
			}
		}
	}
	slices.Sort(probes)
	if !slices.Equal(probes, []string{"added", "kept"}) {
		t.Errorf("responder_probe_success series for %v, want added and kept", probes)
	}
}

// reloadHandlerSetting: handlers.http.timeout lowered by a reload while an action runs: the
// running action keeps the handler it started with (it succeeds after the new timeout), and an
// action started after the reload times out with the new one.
func reloadHandlerSetting(t *testing.T, o fixtureOpts) {
	release := make(chan struct{})
	var once sync.Once
	t.Cleanup(func() { once.Do(func() { close(release) }) })
	arrived := make(chan string, 4)
	s := &sink{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- r.URL.Path
		select {
		case <-release:
		case <-r.Context().Done():
		}
		s.mu.Lock()
		s.calls = append(s.calls, sinkCall{Path: r.URL.Path})
		s.mu.Unlock()
	}))
	t.Cleanup(s.Close)
	o.sink = s
	o.http = ", timeout: 1m, retries: 0"
	f := startApp(t, o)
	f.fire("a")
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the first action did not call")
	}
	o.http = ", timeout: 300ms, retries: 0"
	if changed := f.mustReload(o); !slices.Equal(changed, []string{"handlers.http.timeout"}) {
		t.Errorf("changed = %v", changed)
	}
	f.fire("b")
	if a := f.waitAction("b", "failed"); a["reason"] != "timeout" {
		t.Fatalf("the action after the reload failed with %v, want timeout", a["reason"])
	}
	if a := f.actionOf("a"); a["state"] != "running" {
		t.Fatalf("the action that started before the reload is %v, want still running", a["state"])
	}
	once.Do(func() { close(release) })
	f.waitAction("a", "succeeded")
}

// TestReloadRefusesRestartKeys: a reload changing a key that needs a restart is refused, naming
// the key, and changes nothing: not the rules nor the allowed hosts changed beside it. The last
// good configuration still acts; the metric and the status say the reload failed.
func TestReloadRefusesRestartKeys(t *testing.T) {
	o := fixtureOpts{dbURL: pgtest.NewDatabase(t)}
	f := startApp(t, o)
	other := newSink(t)
	before := f.status()
	for _, tc := range []struct {
		name  string
		edit  func(o fixtureOpts) fixtureOpts
		error string
	}{
		{"database.url", func(o fixtureOpts) fixtureOpts {
			sep := "?"
			if strings.Contains(o.dbURL, "?") {
				sep = "&"
			}
			o.dbURL += sep + "application_name=another"
			return o
		}, "database.url: changed; needs a restart"},
		{"nats.url", func(o fixtureOpts) fixtureOpts { o.natsURL = "nats://127.0.0.1:4222"; return o }, "nats.url: changed; needs a restart"},
		{"bus", func(o fixtureOpts) fixtureOpts { o.extra = "bus: {max_bytes: 2GiB}\n"; return o }, "bus.max_bytes: changed; needs a restart"},
		{"limits", func(o fixtureOpts) fixtureOpts { o.extra = "limits: {max_params_bytes: 32KiB}\n"; return o },
			"limits.max_params_bytes: changed; needs a restart"},
		{"execution slots and leases", func(o fixtureOpts) fixtureOpts {
			o.extra = "safety: {max_concurrent_actions: 2, lease_duration: 1m}\n"
			return o
		}, "safety.lease_duration: changed; needs a restart; safety.max_concurrent_actions: changed; needs a restart"},
		{"slack added", func(o fixtureOpts) fixtureOpts {
			o.files = map[string]string{"bot": "xoxb-1\n", "signing": "s\n"}
			o.extra = "slack: {bot_token_file: bot, signing_secret_file: signing, channel: \"#incidents\"}\n"
			return o
		}, "slack.bot_token: changed; needs a restart; slack.bot_token_file: changed; needs a restart"},
		{"a broken file", func(o fixtureOpts) fixtureOpts { o.extra = "webhook: [\n"; return o }, "responder.yml:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			next := tc.edit(o)
			next.hosts = []string{other.HostPort()} // beside it, changes a reload may apply
			next.rules = restartRules(other.HostPort(), "")
			r := f.reloadWith(next)
			if r.Code != 400 || !strings.Contains(r.Error, tc.error) {
				t.Fatalf("reload: %d %q, want 400 naming %q", r.Code, r.Error, tc.error)
			}
			if v := metricValue(t, f, "responder_config_last_reload_successful"); v != 0 {
				t.Errorf("config_last_reload_successful = %v", v)
			}
			st := f.status()
			if st.RuleHash != before.RuleHash || st.LastReload.Successful || !strings.Contains(st.LastReload.Error, tc.error) {
				t.Errorf("status after a refused reload: %+v (before %+v)", st, before)
			}
		})
	}
	// The configuration in force is the first one: its rule acts, through its host.
	f.fire("a")
	f.waitAction("a", "succeeded")
	if got := pathsOf(f.sink); !slices.Equal(got, []string{"/hooks/restart/a"}) || len(other.Calls()) != 0 {
		t.Fatalf("after refused reloads: the sink got %v, the other host %v", got, pathsOf(other))
	}
	// Back to the file it runs: a reload that changes nothing succeeds.
	r := f.reloadWith(o)
	if r.Code != 200 || len(r.Changed) != 0 {
		t.Fatalf("reload of the configuration in force: %d %q %v", r.Code, r.Error, r.Changed)
	}
	if v := metricValue(t, f, "responder_config_last_reload_successful"); v != 1 {
		t.Errorf("config_last_reload_successful = %v", v)
	}
}

// TestReloadOnSignal: serve hands SIGHUP to ReloadOnSignal, which reloads as POST /-/reload
// does; the audit trail records it under "signal".
func TestReloadOnSignal(t *testing.T) {
	o := fixtureOpts{dbURL: pgtest.NewDatabase(t)}
	f := startApp(t, o)
	ctx, cancel := context.WithCancel(context.Background())
	hup := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { defer close(done); f.app.ReloadOnSignal(ctx, hup) }()
	defer func() { cancel(); <-done }()
	other := newSink(t)
	o.hosts = []string{other.HostPort()}
	writeConfig(t, f.dir, f.sink, o)
	hup <- syscall.SIGHUP
	testwait.Until(t, 20*time.Second, "the reload audited", func() bool {
		for _, r := range f.auditOf("reload", 0) {
			if r.Actor == "signal" && r.Reason == "reloaded" && fmt.Sprint(r.Detail["changed"]) == "[handlers.http.allowed_hosts]" {
				return true
			}
		}
		return false
	})
}

// TestConcurrentReloadsSerialize: reloads asked at once run one after the other: the first
// applies the change and each later one finds nothing left to change. Together they would all
// have compared against the old configuration and each reported the change.
func TestConcurrentReloadsSerialize(t *testing.T) {
	o := fixtureOpts{dbURL: pgtest.NewDatabase(t)}
	f := startApp(t, o)
	o.extra = "safety: {action_timeout: 2m}\n"
	writeConfig(t, f.dir, f.sink, o)
	const n = 8
	answers := make(chan reloadAnswer, n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { answers <- f.reloadNow() })
	}
	wg.Wait()
	close(answers)
	var changed []string
	for r := range answers {
		if r.Code != 200 {
			t.Fatalf("reload: %d %s", r.Code, r.Error)
		}
		changed = append(changed, r.Changed...)
	}
	if !slices.Equal(changed, []string{"safety.action_timeout"}) {
		t.Fatalf("the reloads reported %v changed, want safety.action_timeout once", changed)
	}
	if rows := f.auditOf("reload", 0); len(rows) != n {
		t.Fatalf("%d reloads audited, want %d", len(rows), n)
	}
}

// TestReloadWhileAlertsFlow: reloads swapping the handlers and settings back and forth while
// alerts arrive and actions run: every alert acts exactly once.
func TestReloadWhileAlertsFlow(t *testing.T) {
	o := fixtureOpts{dbURL: pgtest.NewDatabase(t)}
	f := startApp(t, o)
	const pods = 40
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var reloads atomic.Int64
	wg.Go(func() {
		alt := o
		alt.http = ", timeout: 20s"
		alt.extra = "safety: {budgets: [{name: wide, match: \"k8s.*\", per: global, max: 1000, window: 1h}]}\n"
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			cfg := o
			if i%2 == 0 {
				cfg = alt
			}
			if r := f.reloadWith(cfg); r.Code != 200 {
				t.Errorf("reload %d: %d %s", i, r.Code, r.Error)
				return
			}
			reloads.Add(1)
		}
	})
	for i := range pods {
		f.fire(fmt.Sprint("p", i))
	}
	testwait.Until(t, 60*time.Second, "every alert's action", func() bool { return countState(f.actions("?limit=1000"), "succeeded") == pods })
	close(stop)
	wg.Wait()
	if n := reloads.Load(); n < 4 {
		t.Fatalf("%d reloads while the alerts flowed, want several", n)
	} else {
		t.Logf("%d reloads while %d alerts were acted on", n, pods)
	}
	per := map[string]int{}
	for _, p := range pathsOf(f.sink) {
		per[p]++
	}
	if len(per) != pods {
		t.Fatalf("%d pods called, want %d", len(per), pods)
	}
	for p, n := range per {
		if n != 1 {
			t.Errorf("%s called %d times", p, n)
		}
	}
}

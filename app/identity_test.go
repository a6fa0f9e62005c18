package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/responder-sre/responder/app"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// The named API tokens of the tests below: ci may read, ops and oncall may also act.
const (
	ciToken     = "ci-token-for-tests"
	opsToken    = "ops-token-for-tests"
	oncallToken = "oncall-token-for-tests"
)

var namedTokens = fixtureOpts{
	api: `, tokens: [{name: ci, token_file: ci.token, role: read}, {name: ops, token_file: ops.token, role: admin},
    {name: oncall, token_file: oncall.token, role: admin}]`,
	files: map[string]string{"ci.token": ciToken + "\n", "ops.token": opsToken + "\n", "oncall.token": oncallToken + "\n"},
}

// twoPersonRules: every alert's action needs two distinct approvers.
func twoPersonRules(s *sink) string {
	return fmt.Sprintf(`
rules:
  - name: careful
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        approval: required
        approvals_required: 2
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
`, s.HostPort())
}

// awaiting fires an alert per pod and returns the ids of their actions awaiting approval, by pod.
func (f *fixture) awaiting(pods ...string) map[string]int {
	f.t.Helper()
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), pods...)); code != 200 {
		f.t.Fatalf("post: %d", code)
	}
	testwait.Until(f.t, 20*time.Second, fmt.Sprint(len(pods), " actions awaiting approval"), func() bool {
		return countState(f.actions(""), "awaiting_approval") == len(pods)
	})
	ids := map[string]int{}
	for _, it := range f.actions("") {
		url := fmt.Sprint(it["params"].(map[string]any)["url"])
		ids[url[strings.LastIndex(url, "/")+1:]] = int(it["id"].(float64))
	}
	return ids
}

// decide posts an approve or deny with token and an optional body.
func (f *fixture) decide(id int, decision, token, body string) (int, string) {
	f.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	code, resp := f.do("POST", fmt.Sprintf("/api/v1/actions/%d/%s", id, decision), token, b)
	return code, string(resp)
}

type auditRow struct {
	Kind   string         `json:"kind"`
	Actor  string         `json:"actor"`
	Reason string         `json:"reason"`
	Detail map[string]any `json:"detail"`
	Action *int64         `json:"action_id"`
}

// auditOf returns the audit rows of kind (of action id when id > 0), oldest first.
func (f *fixture) auditOf(kind string, id int) []auditRow {
	f.t.Helper()
	code, b := f.do("GET", "/api/v1/audit?limit=1000", readToken, nil)
	if code != 200 {
		f.t.Fatalf("audit: %d %s", code, b)
	}
	var l struct{ Items []auditRow }
	must(f.t, json.Unmarshal(b, &l))
	var out []auditRow
	for _, r := range slices.Backward(l.Items) {
		if r.Kind == kind && (id == 0 || r.Action != nil && *r.Action == int64(id)) {
			out = append(out, r)
		}
	}
	return out
}

// TestNamedTokensDecide: a named read token reads and may not act; a named admin token's
// decision is recorded under its name, via api; two different admin tokens make two approvers,
// the same one twice is a replay; a request no longer chooses its own "by", except with the
// shared admin token, which keeps it (deprecated).
func TestNamedTokensDecide(t *testing.T) {
	o := namedTokens
	o.rules = twoPersonRules
	f := startApp(t, o)
	ids := f.awaiting("a", "b", "c")

	for _, path := range []string{"/api/v1/actions", "/api/v1/status", "/api/v1/audit", fmt.Sprint("/api/v1/actions/", ids["a"])} {
		if code, b := f.do("GET", path, ciToken, nil); code != 200 {
			t.Fatalf("GET %s with the named read token: %d %s", path, code, b)
		}
	}
	for _, tc := range []struct{ path, body string }{
		{fmt.Sprintf("/api/v1/actions/%d/approve", ids["a"]), ""},
		{fmt.Sprintf("/api/v1/actions/%d/deny", ids["a"]), ""},
		{"/api/v1/pause", `{"reason":"x"}`},
		{"/api/v1/resume", ""},
		{"/api/v1/breakers/http.request/x/reset", ""},
		{"/-/reload", ""},
	} {
		code, b := f.do("POST", tc.path, ciToken, []byte(tc.body))
		if code != 403 || !strings.Contains(string(b), `token \"ci\" is read-only`) {
			t.Fatalf("POST %s with the named read token: %d %s, want 403", tc.path, code, b)
		}
	}

	// A body "by" naming someone else than the token: 400, nothing recorded.
	if code, b := f.decide(ids["a"], "approve", opsToken, `{"by":"alice"}`); code != 400 ||
		!strings.Contains(b, `by \"alice\" is not this token's name \"ops\"`) {
		t.Fatalf("named token with another by: %d %s", code, b)
	}
	if rows := f.auditOf("approval", ids["a"]); len(rows) != 0 {
		t.Fatalf("a refused decision was recorded: %+v", rows)
	}
	// ops approves (its own name as "by" is fine): 1 of 2; ops again is a replay, not a second approver.
	if code, b := f.decide(ids["a"], "approve", opsToken, ""); code != 200 || !strings.Contains(b, `"awaiting_approval"`) || !strings.Contains(b, `"replay": false`) {
		t.Fatalf("first approval by ops: %d %s", code, b)
	}
	if code, b := f.decide(ids["a"], "approve", opsToken, `{"by":"ops"}`); code != 200 || !strings.Contains(b, `"replay": true`) || !strings.Contains(b, `"awaiting_approval"`) {
		t.Fatalf("ops again: %d %s, want a replay still awaiting a second approver", code, b)
	}
	if code, b := f.decide(ids["a"], "approve", oncallToken, ""); code != 200 || !strings.Contains(b, `"approved_by": "ops,oncall"`) {
		t.Fatalf("second approval by oncall: %d %s", code, b)
	}
	rows := f.auditOf("approval", ids["a"])
	if len(rows) != 2 || rows[0].Actor != "ops" || rows[1].Actor != "oncall" {
		t.Fatalf("approval audit rows = %+v, want ops then oncall", rows)
	}
	for _, r := range rows {
		if r.Detail["via"] != "api" || r.Detail["decision"] != "approve" {
			t.Fatalf("approval audit detail = %v, want via api", r.Detail)
		}
	}
	testwait.Until(t, 20*time.Second, "the approved action to run", func() bool { return len(f.sink.Calls()) == 1 })

	// The shared admin token keeps its "by" (api:<by>), and counts apart from the named tokens.
	if code, b := f.decide(ids["b"], "approve", adminToken, `{"by":"alice"}`); code != 200 || !strings.Contains(b, `"awaiting_approval"`) {
		t.Fatalf("legacy token with by: %d %s", code, b)
	}
	if code, b := f.decide(ids["b"], "approve", adminToken, `{"by":"bad name"}`); code != 400 {
		t.Fatalf("legacy token with an invalid by: %d %s", code, b)
	}
	if code, b := f.decide(ids["b"], "approve", opsToken, ""); code != 200 || !strings.Contains(b, `"approved_by": "api:alice,ops"`) {
		t.Fatalf("ops after the legacy token: %d %s", code, b)
	}
	if rows := f.auditOf("approval", ids["b"]); len(rows) != 2 || rows[0].Actor != "api:alice" || rows[1].Actor != "ops" {
		t.Fatalf("audit of b = %+v", rows)
	}

	if code, b := f.decide(ids["c"], "deny", oncallToken, ""); code != 200 || !strings.Contains(b, `"denied by oncall"`) {
		t.Fatalf("deny by oncall: %d %s", code, b)
	}
	if rows := f.auditOf("approval", ids["c"]); len(rows) != 1 || rows[0].Actor != "oncall" || rows[0].Detail["via"] != "api" || rows[0].Detail["decision"] != "deny" {
		t.Fatalf("audit of the deny = %+v", rows)
	}
}

// TestNamedTokensControl: pause, resume, a breaker reset and a dead-letter replay are recorded
// under the named token's name; a "by" naming someone else is refused.
func TestNamedTokensControl(t *testing.T) {
	f := startApp(t, namedTokens)
	if code, b := f.do("POST", "/api/v1/pause", opsToken, []byte(`{"reason":"maintenance","by":"alice"}`)); code != 400 || !strings.Contains(string(b), "not this token's name") {
		t.Fatalf("pause with another by: %d %s", code, b)
	}
	if code, b := f.do("POST", "/api/v1/pause", opsToken, []byte(`{"duration":"30m","reason":"maintenance"}`)); code != 200 || !strings.Contains(string(b), `"by": "ops"`) {
		t.Fatalf("pause: %d %s", code, b)
	}
	if code, b := f.do("GET", "/api/v1/status", ciToken, nil); code != 200 || !strings.Contains(string(b), `"paused": true`) || !strings.Contains(string(b), `"by": "ops"`) {
		t.Fatalf("status: %d %s", code, b)
	}
	if code, b := f.do("POST", "/api/v1/resume", oncallToken, []byte(`{"by":"oncall"}`)); code != 200 || !strings.Contains(string(b), `"by": "oncall"`) {
		t.Fatalf("resume: %d %s", code, b)
	}
	if code, b := f.do("POST", "/api/v1/breakers/http.request/nowhere/reset", opsToken, []byte(`{"by":"mallory"}`)); code != 400 {
		t.Fatalf("reset with another by: %d %s", code, b)
	}
	if code, b := f.do("POST", "/api/v1/dead-letters/replay", opsToken, []byte(`{"ids":[1],"by":"mallory"}`)); code != 400 || !strings.Contains(string(b), "not this token's name") {
		t.Fatalf("replay with another by: %d %s", code, b)
	}
	rows := f.auditOf("control", 0)
	if len(rows) != 2 || rows[0].Actor != "ops" || rows[0].Reason != "pause" || rows[1].Actor != "oncall" || rows[1].Reason != "resume" {
		t.Fatalf("control audit rows = %+v, want a pause by ops and a resume by oncall", rows)
	}
}

// TestNamedTokensOnlyStart: a config whose only API token is a named admin one starts; one with
// only a read token is refused as unauthenticated; a named token equal to another is a config
// error naming file and line.
func TestNamedTokensOnlyStart(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "ops.token"), []byte(opsToken+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "ci.token"), []byte(ciToken+"\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "copy.token"), []byte(opsToken+"\n"), 0o600))
	unreachable := "postgres://127.0.0.1:1/none?connect_timeout=1"
	for _, tc := range []struct {
		name, api, want string
		refused         bool
	}{
		{"admin", "tokens: [{name: ops, token_file: ops.token, role: admin}]", "", false},
		{"read only", "tokens: [{name: ci, token_file: ci.token}]", "--web.no-auth", true},
		{"same token twice", "tokens: [{name: ops, token_file: ops.token, role: admin}, {name: copy, token_file: copy.token}]",
			"responder.yml:3: api.tokens[1].token_file: the same token as api.tokens[0]", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := filepath.Join(dir, "responder.yml")
			must(t, os.WriteFile(cfg, fmt.Appendf(nil, "database: {url: %q}\nwebhook: {bearer_token: %q}\napi: {%s}\n", unreachable, hookToken, tc.api), 0o600))
			_, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: "127.0.0.1:0", StoragePath: dir})
			switch {
			case err == nil:
				t.Fatal("started against an unreachable database")
			case tc.refused && !strings.Contains(err.Error(), tc.want):
				t.Fatalf("err = %v, want %q", err, tc.want)
			case !tc.refused && (strings.Contains(err.Error(), "--web.no-auth") || strings.Contains(err.Error(), "responder.yml")):
				t.Fatalf("err = %v, want the database's (the named admin token is enough)", err)
			}
		})
	}
}

// TestWebAuthFromConfig: web.users, web.auth and approvals.approvers.web make the console's
// authenticator (App.WebAuth): basic auth against the bcrypt hashes, a proxy header believed from
// a trusted proxy only, refused logins counted in responder_web_logins_total.
func TestWebAuthFromConfig(t *testing.T) {
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		must(t, err)
		return string(h)
	}
	f := startApp(t, fixtureOpts{extra: fmt.Sprintf(`web:
  users:
    alice: {password_hash: %q, role: admin}
    bob: {password_hash: %q}
  auth: {proxy_header: X-Forwarded-User, trusted_proxies: [10.0.0.0/8]}
approvals:
  approvers: {web: [alice]}
`, hash("alice-password"), hash("bob-password"))})
	w := f.app.WebAuth()
	if w == nil {
		t.Fatal("no console authenticator")
	}
	if got := f.app.WebApprovers(); !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("WebApprovers() = %q", got)
	}
	for _, tc := range []struct {
		remote, user, pass, proxy string
		want                      identity.Principal
		err                       error
	}{
		{"127.0.0.1:1", "alice", "alice-password", "", identity.Principal{Name: "alice", Role: identity.RoleAdmin, Via: identity.ViaWeb}, nil},
		{"127.0.0.1:1", "bob", "bob-password", "", identity.Principal{Name: "bob", Role: identity.RoleRead, Via: identity.ViaWeb}, nil},
		{"127.0.0.1:1", "alice", "bob-password", "", identity.Principal{}, identity.ErrBadCredentials},
		{"127.0.0.1:1", "", "", "alice", identity.Principal{}, identity.ErrNoCredentials},
		{"10.1.1.1:1", "", "", "carol", identity.Principal{Name: "carol", Role: identity.RoleRead, Via: identity.ViaWeb}, nil},
	} {
		r := httptest.NewRequest("GET", "/ui/", nil)
		r.RemoteAddr = tc.remote
		if tc.user != "" {
			r.SetBasicAuth(tc.user, tc.pass)
		}
		if tc.proxy != "" {
			r.Header.Set("X-Forwarded-User", tc.proxy)
		}
		p, err := w.Authenticate(r)
		if p != tc.want || !errors.Is(err, tc.err) {
			t.Errorf("%+v: %+v, %v; want %+v, %v", tc, p, err, tc.want, tc.err)
		}
	}
	if !w.MayDecide(identity.Principal{Name: "alice", Role: identity.RoleAdmin, Via: identity.ViaWeb}) {
		t.Error("alice may not decide")
	}
	if v := metricValue(t, f, "responder_web_logins_total"); v != 3 {
		t.Errorf("responder_web_logins_total = %v, want 3 (two verified passwords, one refused)", v)
	}
	code, b := f.do("GET", "/metrics", "", nil)
	if code != 200 || !strings.Contains(string(b), `responder_web_logins_total{outcome="wrong_password"} 1`) {
		t.Errorf("/metrics lacks the refused login: %d", code)
	}

	// Without web users the app has no console authenticator.
	if g := startApp(t, fixtureOpts{}); g.app.WebAuth() != nil {
		t.Error("WebAuth() without web.users")
	}
}

// TestNoAuthKeepsBy: under --web.no-auth a request without a token is the shared admin token's:
// "by" names the human as before.
func TestNoAuthKeepsBy(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "responder.yml")
	must(t, os.WriteFile(cfg, fmt.Appendf(nil, "database: {url: %q}\n", pgtest.NewDatabase(t)), 0o600))
	a, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: "127.0.0.1:0", StoragePath: filepath.Join(dir, "data"),
		NoAuth: true, Version: "test", DrainTimeout: 5 * time.Second})
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	f := &fixture{t: t, app: a, base: "http://" + a.Addr()}
	if code, b := f.do("POST", "/api/v1/pause", "", []byte(`{"reason":"x","by":"alice"}`)); code != 200 || !strings.Contains(string(b), `"by": "api:alice"`) {
		t.Fatalf("pause without auth: %d %s", code, b)
	}
	if code, b := f.do("POST", "/api/v1/resume", "", nil); code != 200 || !strings.Contains(string(b), `"by": "api"`) {
		t.Fatalf("resume without auth: %d %s", code, b)
	}
}

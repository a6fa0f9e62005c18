package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/responder-sre/responder/internal/testwait"
)

// consoleUser (an admin named in approvals.approvers.web) and readUser (role read) are the console
// users of consoleOpts, with their passwords.
const (
	consoleUser, consolePassword = "alice", "alice-test-password"
	readUser, readPassword       = "bob", "bob-test-password"
)

// consoleOpts is a fixture with the two console users (bcrypt at its lowest cost: tests only).
func consoleOpts(t *testing.T) fixtureOpts {
	t.Helper()
	hash := func(pw string) string {
		h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
		must(t, err)
		return string(h)
	}
	return fixtureOpts{extra: fmt.Sprintf(`web:
  users:
    %s: {password_hash: %q, role: admin}
    %s: {password_hash: %q, role: read}
approvals: {approvers: {web: [%s]}}
`, consoleUser, hash(consolePassword), readUser, hash(readPassword), consoleUser)}
}

// browser is a console client logged in with basic auth: a cookie jar (the CSRF cookie),
// following the 303s back to pages.
type browser struct {
	t          *testing.T
	base       string
	user, pass string
	c          *http.Client
}

func newBrowser(t *testing.T, f *fixture, user, pass string) *browser {
	jar, err := cookiejar.New(nil)
	must(t, err)
	return &browser{t: t, base: f.base, user: user, pass: pass, c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (b *browser) do(req *http.Request) (int, string) {
	b.t.Helper()
	req.SetBasicAuth(b.user, b.pass)
	resp, err := b.c.Do(req)
	must(b.t, err)
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func (b *browser) get(path string) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.base+path, nil)
	must(b.t, err)
	return b.do(req)
}

// post submits a form; the answer is the page the 303 leads back to (the client resends the
// basic auth on the redirect to the same host).
func (b *browser) post(path string, form url.Values) (int, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodPost, b.base+path, strings.NewReader(form.Encode()))
	must(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the token of the forms on page.
func (b *browser) csrf(page string) string {
	b.t.Helper()
	m := csrfField.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no CSRF token on the page:\n%s", page)
	}
	return m[1]
}

// hostileAlert is an Alertmanager payload whose labels and annotations hold markup and a
// javascript: runbook.
func hostileAlert(starts time.Time) []byte {
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": "{}", "status": "firing", "receiver": "responder",
		"groupLabels": map[string]string{}, "commonLabels": map[string]string{}, "commonAnnotations": map[string]string{},
		"externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
		"alerts": []map[string]any{{"status": "firing", "startsAt": starts,
			"labels": map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-1", "team": "<script>alert(1)</script>"},
			"annotations": map[string]string{"summary": "<img src=x onerror=alert(1)>", "runbook_url": "javascript:alert(1)",
				"dashboard_url": "https://grafana.example.com/d/pods"}}}})
	return b
}

// TestConsoleApproveEndToEnd: an alert whose action needs approval; the incident page shows it
// (escaped, secrets hidden, links only when http(s)); Approve with the page's CSRF token approves
// it through the engine, and it runs; the audit row names the user and the web; a second click is
// a replay; a form without the token is refused.
func TestConsoleApproveEndToEnd(t *testing.T) {
	f := startApp(t, consoleOpts(t))
	rules := fmt.Sprintf(`
rules:
  - name: careful
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        approval: required
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
          headers: {Authorization: "Bearer s3cret-token"}
`, f.sink.HostPort())
	must(t, os.WriteFile(filepath.Join(f.dir, "rules", "pods.yml"), []byte(rules), 0o644))
	if code, b := f.do("POST", "/-/reload", adminToken, nil); code != 200 {
		t.Fatalf("reload: %d %s", code, b)
	}
	if code := f.post(hostileAlert(time.Now().UTC().Truncate(time.Second))); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 10*time.Second, "an action awaiting approval", func() bool { return countState(f.actions(""), "awaiting_approval") == 1 })
	act := f.actions("")[0]
	id, incID := int(act["id"].(float64)), int(act["incident_id"].(float64))

	br := newBrowser(t, f, consoleUser, consolePassword)
	if code, page := br.get("/ui/"); code != 200 || !strings.Contains(page, ">1 awaiting approval</a>") ||
		!strings.Contains(page, fmt.Sprintf(`href="/ui/incidents/%d"`, incID)) {
		t.Fatalf("incidents page: %d\n%s", code, page)
	}
	code, page := br.get(fmt.Sprintf("/ui/incidents/%d", incID))
	if code != 200 {
		t.Fatalf("incident page: %d\n%s", code, page)
	}
	for _, want := range []string{
		fmt.Sprintf(`<form method="post" action="/ui/actions/%d/approve" id="approve-%d"`, id, id),
		fmt.Sprintf(`id="deny-%d"`, id),
		"&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x onerror=alert(1)&gt;",
		`<a id="dashboard" href="https://grafana.example.com/d/pods"`,
		"&lt;secret&gt;", "Expires in 1", // approvals.ttl 15m by default
	} {
		if !strings.Contains(page, want) {
			t.Errorf("incident page: %q missing", want)
		}
	}
	for _, bad := range []string{"<script>", "<img", `href="javascript:`, "s3cret-token"} {
		if strings.Contains(page, bad) {
			t.Errorf("incident page: %q present", bad)
		}
	}
	if t.Failed() {
		t.Fatalf("the page:\n%s", page)
	}
	tok := br.csrf(page)

	// A forged form (no token) is refused and decides nothing.
	if code, _ := br.post(fmt.Sprintf("/ui/actions/%d/approve", id), url.Values{"back": {"/ui/"}}); code != 403 {
		t.Fatalf("approve without a token: %d", code)
	}
	if countState(f.actions(""), "awaiting_approval") != 1 {
		t.Fatal("a forged form decided")
	}

	back := fmt.Sprintf("/ui/incidents/%d", incID)
	code, page = br.post(fmt.Sprintf("/ui/actions/%d/approve", id), url.Values{"csrf": {tok}, "back": {back}})
	if code != 200 || !strings.Contains(page, fmt.Sprintf("Action %d approved: it runs now.", id)) {
		t.Fatalf("approve: %d\n%s", code, page)
	}
	testwait.Until(t, 10*time.Second, "the approved action to run", func() bool { return len(f.sink.Calls()) == 1 })
	testwait.Until(t, 10*time.Second, "the action to succeed", func() bool { return countState(f.actions(""), "succeeded") == 1 })

	// The audit trail says who decided, and through what.
	var actor, via string
	must(t, f.app.Store().Pool().QueryRow(context.Background(),
		`SELECT actor, detail->>'via' FROM audit WHERE kind = 'approval' AND action_id = $1`, id).Scan(&actor, &via))
	if actor != consoleUser || via != "web" {
		t.Fatalf("approval audited as %q via %q, want %q via web", actor, via, consoleUser)
	}
	if code, b := f.do("GET", fmt.Sprintf("/api/v1/actions/%d", id), readToken, nil); code != 200 || !strings.Contains(string(b), `"approved_by": "`+consoleUser+`"`) {
		t.Fatalf("action: %d %s", code, b)
	}

	// A double click: the second approval is a replay, and says so; nothing runs twice.
	code, page = br.post(fmt.Sprintf("/ui/actions/%d/approve", id), url.Values{"csrf": {tok}, "back": {back}})
	if code != 200 || !strings.Contains(page, "you had already approved it") {
		t.Fatalf("second click: %d\n%s", code, page)
	}
	if n := len(f.sink.Calls()); n != 1 {
		t.Fatalf("%d calls after a double click", n)
	}
	// The timeline shows the decision.
	if _, page = br.get(back); !strings.Contains(page, "<strong>approval</strong> approved <span class=\"actor\">by "+consoleUser+"</span>") {
		t.Fatalf("the timeline does not show the approval:\n%s", page)
	}
	// The audit search finds the incident's rows by rule.
	if code, page = br.get("/ui/audit?rule=careful"); code != 200 || !strings.Contains(page, "<strong>approval</strong>") {
		t.Fatalf("audit search: %d\n%s", code, page)
	}
}

// TestConsolePauseStopsDisruptiveActions: pause from the status page; a disruptive action of an
// alert after it is skipped (the engine reads the pause row) and never starts; resume from the
// page.
func TestConsolePauseStopsDisruptiveActions(t *testing.T) {
	f := startApp(t, consoleOpts(t))
	br := newBrowser(t, f, consoleUser, consolePassword)
	code, page := br.get("/ui/status")
	if code != 200 || !strings.Contains(page, `id="pause"`) || !strings.Contains(page, "Running: actions are not paused.") {
		t.Fatalf("status page: %d\n%s", code, page)
	}
	code, page = br.post("/ui/pause", url.Values{"csrf": {br.csrf(page)}, "duration": {"1h"}, "reason": {"db maintenance"}})
	if code != 200 || !strings.Contains(page, "Paused until") || !strings.Contains(page, "by "+consoleUser+" (db maintenance)") {
		t.Fatalf("pause: %d\n%s", code, page)
	}
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "p1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the restart skipped as paused", func() bool {
		for _, a := range f.actions("") {
			if a["state"] == "skipped" && a["reason"] == "paused" {
				return true
			}
		}
		return false
	})
	if n := len(f.sink.Calls()); n != 0 {
		t.Fatalf("%d calls while paused", n)
	}
	var late int
	must(t, f.app.Store().Pool().QueryRow(context.Background(), `
SELECT count(*) FROM actions a, pause p WHERE a.class = 'disruptive' AND a.started_at >= p.at`).Scan(&late))
	if late != 0 {
		t.Fatalf("%d disruptive actions started after the pause committed", late)
	}
	var by, reason string
	must(t, f.app.Store().Pool().QueryRow(context.Background(), `SELECT by, reason FROM pause`).Scan(&by, &reason))
	if by != consoleUser || reason != "db maintenance" {
		t.Fatalf("pause row by %q reason %q", by, reason)
	}
	var actor, via string
	must(t, f.app.Store().Pool().QueryRow(context.Background(),
		`SELECT actor, detail->>'via' FROM audit WHERE kind = 'control' AND reason = 'pause'`).Scan(&actor, &via))
	if actor != consoleUser || via != "web" {
		t.Errorf("the pause is audited by %q via %q, want %s via web", actor, via, consoleUser)
	}
	code, page = br.post("/ui/resume", url.Values{"csrf": {br.csrf(page)}, "reason": {"done"}})
	if code != 200 || !strings.Contains(page, "Resumed") || !strings.Contains(page, "Running: actions are not paused.") {
		t.Fatalf("resume: %d\n%s", code, page)
	}
}

// TestConsoleRefusesWithoutUsers: without console users (web.users, web.auth) and without
// --web.no-auth, /ui/ asks for credentials and lets nobody in; the API is unchanged.
func TestConsoleRefusesWithoutUsers(t *testing.T) {
	f := startApp(t, fixtureOpts{})
	resp, err := http.Get(f.base + "/ui/")
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") == "" || resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("/ui/ without users: %d %v", resp.StatusCode, resp.Header)
	}
	if code, _ := f.do("GET", "/api/v1/status", readToken, nil); code != 200 {
		t.Fatalf("API status: %d", code)
	}
}

// TestConsoleRoles: a wrong password is refused (401, counted); the read user sees the incident
// but no Approve, Deny or Pause, and a decision or a pause it forges answers 403 and changes
// nothing.
func TestConsoleRoles(t *testing.T) {
	f := startApp(t, consoleOpts(t))
	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "p1")); code != 200 {
		t.Fatalf("post: %d", code)
	}
	testwait.Until(t, 20*time.Second, "an action", func() bool { return len(f.actions("")) > 0 })
	act := f.actions("")[0]
	id, incID := int(act["id"].(float64)), int(act["incident_id"].(float64))

	if code, _ := newBrowser(t, f, consoleUser, "wrong").get("/ui/"); code != 401 {
		t.Errorf("a wrong password: %d, want 401", code)
	}
	if v := metricValue(t, f, "responder_web_logins_total"); v < 1 { // the wrong password: nobody else logged in yet
		t.Errorf("responder_web_logins_total = %v, want the refused login counted", v)
	}
	bob := newBrowser(t, f, readUser, readPassword)
	code, page := bob.get(fmt.Sprintf("/ui/incidents/%d", incID))
	if code != 200 {
		t.Fatalf("the read user's incident page: %d\n%s", code, page)
	}
	for _, form := range []string{fmt.Sprintf(`id="approve-%d"`, id), fmt.Sprintf(`id="deny-%d"`, id)} {
		if strings.Contains(page, form) {
			t.Errorf("the read user sees %s", form)
		}
	}
	// The read user's pages hold no form to take a token from (the console's unit tests refuse a
	// read user's POST with a valid token too).
	if strings.Contains(page, `name="csrf"`) {
		t.Error("the read user's incident page holds a form")
	}
	if code, _ := bob.post(fmt.Sprintf("/ui/actions/%d/approve", id), url.Values{"csrf": {"forged"}}); code != 403 {
		t.Errorf("the read user's forged approve: %d, want 403", code)
	}
	code, page = bob.get("/ui/status")
	if code != 200 || strings.Contains(page, `id="pause"`) {
		t.Errorf("the read user's status page: %d, pause form shown: %v", code, strings.Contains(page, `id="pause"`))
	}
	if code, _ := bob.post("/ui/pause", url.Values{"csrf": {"forged"}, "duration": {"1h"}, "reason": {"x"}}); code != 403 {
		t.Errorf("the read user's forged pause: %d, want 403", code)
	}
	var paused bool
	must(t, f.app.Store().Pool().QueryRow(context.Background(), `SELECT coalesce((SELECT paused FROM pause), false)`).Scan(&paused))
	if paused {
		t.Error("the read user's forged pause paused")
	}
}

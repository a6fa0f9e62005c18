package console

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// t0 is the tests' clock.
var t0 = time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)

// fakeStore is the Store the handler tests read: fixed rows, and a record of the decisions and
// switches (the real store and engine are exercised by app's tests).
type fakeStore struct {
	mu        sync.Mutex
	inc       *Incident
	decisions []string
	pauses    []string
	resets    []string
	decideErr error
	replay    bool
	drills    []store.DrillRun
}

func (f *fakeStore) Drills(_ context.Context, fl store.DrillFilter) ([]store.DrillRun, string, error) {
	if fl.Cursor == "bad" {
		return nil, "", errors.New("invalid cursor \"bad\"")
	}
	var out []store.DrillRun
	for _, d := range f.drills {
		if fl.Name == "" || d.Name == fl.Name {
			out = append(out, d)
		}
	}
	return out, "", nil
}

func (f *fakeStore) Incidents(_ context.Context, fl store.IncidentFilter) ([]store.Incident, string, error) {
	if fl.Cursor == "bad" {
		return nil, "", errors.New("invalid cursor \"bad\"")
	}
	if fl.Rule != "" && fl.Rule != f.inc.Rule {
		return []store.Incident{}, "", nil
	}
	return []store.Incident{f.inc.Incident}, "", nil
}

func (f *fakeStore) Incident(_ context.Context, id int64) (*Incident, error) {
	if id != f.inc.ID {
		return nil, store.ErrNotFound
	}
	return f.inc, nil
}

func (f *fakeStore) AwaitingApproval(context.Context) ([]store.Action, error) {
	var out []store.Action
	for _, a := range f.inc.Actions {
		if a.State == vocab.StateAwaitingApproval {
			out = append(out, a)
		}
	}
	return out, nil
}

func (f *fakeStore) PendingApprovals(ctx context.Context) (int, error) {
	as, err := f.AwaitingApproval(ctx)
	return len(as), err
}

func (f *fakeStore) Audit(_ context.Context, fl store.AuditFilter) ([]store.AuditEntry, string, error) {
	return f.inc.Audit, "", nil
}

func (f *fakeStore) Status(context.Context) Status {
	return Status{Paused: true, Pause: store.PauseState{Paused: true, By: "carol", Reason: "db maintenance", At: t0.Add(-time.Minute)},
		Breakers: []store.Breaker{{Handler: "k8s.restart_pod", Scope: "shop", State: store.BreakerOpen, Failures: 3}},
		Budgets:  []Budget{{Name: "k8s", Match: "k8s.*", Per: "namespace", Window: "10m", Max: 3, MostUsed: 1}},
		Leader:   Leader{Replica: "r1", Leading: true, Token: 7}, BusPending: 12, BusPendingErr: "", DeadLetters: 2,
		ApprovalsPending: 1, Version: "test", Rules: 1, RuleHash: "abc"}
}

func (f *fakeStore) RuleNames() []string { return []string{"restart-pod"} }

func (f *fakeStore) Decide(_ context.Context, id int64, approver, decision, via string) (store.DecisionResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.decisions = append(f.decisions, fmt.Sprintf("%d %s %s %s", id, approver, decision, via))
	if f.decideErr != nil {
		return store.DecisionResult{}, f.decideErr
	}
	a := f.inc.Actions[0]
	a.State = vocab.StateApproved
	return store.DecisionResult{Action: &a, Replay: f.replay}, nil
}

func (f *fakeStore) Pause(_ context.Context, by, reason string, d time.Duration) (store.PauseState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pauses = append(f.pauses, fmt.Sprintf("pause %s %q %s", by, reason, d))
	ps := store.PauseState{Paused: true, By: by, Reason: reason, At: t0}
	if d > 0 {
		u := t0.Add(d)
		ps.Until = &u
	}
	return ps, nil
}

func (f *fakeStore) Resume(_ context.Context, by, reason string) (store.PauseState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pauses = append(f.pauses, fmt.Sprintf("resume %s %q", by, reason))
	return store.PauseState{By: by, Reason: reason, At: t0}, nil
}

func (f *fakeStore) ResetBreaker(_ context.Context, handler, scope, by string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.resets = append(f.resets, handler+" "+scope+" "+by)
	return handler == "k8s.restart_pod", nil
}

// hostile is what an attacker controls: the alert's labels and annotations.
const hostile = `<script>alert(1)</script>`

func newFakeStore() *fakeStore {
	id, act := int64(7), int64(42)
	created := t0.Add(-5 * time.Minute)
	return &fakeStore{inc: &Incident{
		Incident: store.Incident{ID: id, Rule: "restart-pod", Fingerprint: "f00d", State: vocab.IncidentFiring, AlertName: "KubePodCrashLooping",
			Labels:   map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": hostile},
			StartsAt: t0.Add(-10 * time.Minute), LastSeenAt: t0.Add(-time.Minute), Version: "test", RuleHash: "abc",
			Actions: []store.Action{{ID: act, IncidentID: id, Phase: vocab.PhaseActions, Step: 0, Rule: "restart-pod", Handler: "k8s.restart_pod",
				Target: "shop/Deployment/checkout", Class: vocab.ClassDisruptive, Mode: vocab.ModeEnforce, Approval: "required",
				Params: map[string]any{"namespace": "shop", "pod": hostile, "headers": map[string]any{"Authorization": "<secret>"}},
				State:  vocab.StateAwaitingApproval, CreatedAt: created, Evidence: "workload shop/Deployment/checkout: 3 replicas, PDB allows 1 disruption"}},
			Audit: []store.AuditEntry{
				{ID: 2, At: created, IncidentID: &id, ActionID: &act, Kind: store.AuditAction, Actor: "r1", Reason: "awaiting_approval",
					Detail: map[string]any{"handler": "k8s.restart_pod", "verdict": "check: ok; budget k8s: 1 of 3 used"}},
				{ID: 1, At: t0.Add(-6 * time.Minute), IncidentID: &id, Kind: store.AuditIncident, Actor: "engine", Reason: "firing",
					Detail: map[string]any{"alert": "KubePodCrashLooping", "labels": map[string]any{"pod": hostile}}},
			}},
		Alert: alert.Alert{Annotations: map[string]string{
			"summary":       "pod " + hostile + " is crash looping",
			"runbook_url":   "javascript:alert(1)",
			"dashboard_url": "https://grafana.example.com/d/pods?var-pod=x&from=now-1h",
			"description":   "see https://example.com/not-a-link-key",
		}, GeneratorURL: "http://prometheus:9090/graph?g0.expr=up"},
	}}
}

// users: alice (admin, approver), carol (admin, not an approver), bob (read); password "pw".
var users = map[string]identity.Role{"alice": identity.RoleAdmin, "carol": identity.RoleAdmin, "bob": identity.RoleRead}

func basicAuth(r *http.Request) (identity.Principal, error) {
	u, pw, ok := r.BasicAuth()
	role, known := users[u]
	if !ok || !known || pw != "pw" {
		return identity.Principal{}, errors.New("bad credentials")
	}
	return identity.Principal{Name: u, Role: role}, nil
}

type harness struct {
	t  *testing.T
	c  *console
	h  http.Handler
	st *fakeStore
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	st := newFakeStore()
	c, err := newConsole(Options{Authenticate: basicAuth, Approvers: []string{"alice", "bob"}, Store: st, ApprovalTTL: 15 * time.Minute,
		CSRFKey: []byte("test key"), Now: func() time.Time { return t0 }})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, c: c, h: c.routes(), st: st}
}

// nonce is the tests' CSRF cookie value.
var nonce = b64.EncodeToString([]byte("0123456789abcdef01234567"))

// req serves one request as user (none: ""), with the CSRF cookie unless noCookie.
func (h *harness) req(method, path, user string, form url.Values, hdr map[string]string) *httptest.ResponseRecorder {
	h.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	r := httptest.NewRequest(method, path, body)
	if form != nil {
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if user != "" {
		r.SetBasicAuth(user, "pw")
	}
	r.AddCookie(&http.Cookie{Name: csrfCookie, Value: nonce})
	for k, v := range hdr {
		if k == "Cookie" {
			r.Header.Del("Cookie")
		}
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	return w
}

// token is the CSRF token of user's forms under the tests' cookie.
func (h *harness) token(user string) string { return h.c.sign("csrf", user, nonce) }

func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		path, user string
		code       int
		noStore    bool
	}{
		{"/ui/", "alice", 200, true},
		{"/ui/incidents/7", "alice", 200, true},
		{"/ui/incidents/8", "alice", 404, true},
		{"/ui/incidents/x", "bob", 404, true},
		{"/ui/actions", "bob", 200, true},
		{"/ui/status", "carol", 200, true},
		{"/ui/audit?incident=7", "bob", 200, true},
		{"/ui/drills", "bob", 200, true},
		{"/ui/drills?cursor=bad", "bob", 400, true},
		{"/ui/audit?since=yesterday", "bob", 400, true},
		{"/ui/?cursor=bad", "bob", 400, true},
		{"/ui/?state=burning", "bob", 400, true},
		{"/ui/nowhere", "bob", 404, true},
		{"/ui/", "", 401, true},
		{"/ui/status", "mallory", 401, true},
		{"/ui/static/style.css", "", 200, false},
	} {
		w := h.req("GET", tc.path, tc.user, nil, nil)
		if w.Code != tc.code {
			t.Errorf("GET %s as %q: %d, want %d", tc.path, tc.user, w.Code, tc.code)
		}
		for k, want := range map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Frame-Options":         "DENY",
			"X-Content-Type-Options":  "nosniff",
			"Referrer-Policy":         "same-origin",
		} {
			if got := w.Header().Get(k); got != want {
				t.Errorf("GET %s: %s = %q, want %q", tc.path, k, got, want)
			}
		}
		if cc := w.Header().Get("Cache-Control"); (cc == "no-store") != tc.noStore {
			t.Errorf("GET %s: Cache-Control %q", tc.path, cc)
		}
		if tc.code == 401 && w.Header().Get("WWW-Authenticate") != `Basic realm="responder", charset="UTF-8"` {
			t.Errorf("GET %s: WWW-Authenticate %q", tc.path, w.Header().Get("WWW-Authenticate"))
		}
		if tc.code == 200 && tc.noStore && !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html; charset=utf-8") {
			t.Errorf("GET %s: Content-Type %q", tc.path, w.Header().Get("Content-Type"))
		}
	}
	// A changing request is a POST: a GET of a form's action is not one.
	if w := h.req("GET", "/ui/actions/42/approve", "alice", nil, nil); w.Code != http.StatusNotFound || len(h.st.decisions) != 0 {
		t.Fatalf("GET of approve: %d, decisions %v", w.Code, h.st.decisions)
	}
	// No inline script or style anywhere: the CSP would block them, and the pages do not need them.
	for _, p := range []string{"/ui/", "/ui/incidents/7", "/ui/actions", "/ui/status", "/ui/audit"} {
		body := h.req("GET", p, "alice", nil, nil).Body.String()
		if m := regexp.MustCompile(`(?i)<script|<style|\sstyle=|\son[a-z]+=`).FindString(body); m != "" {
			t.Errorf("GET %s: inline script or style %q", p, m)
		}
	}
}

func TestCSRFCookie(t *testing.T) {
	h := newHarness(t)
	// No cookie yet: the page sets one, and its forms carry the token of it.
	w := h.req("GET", "/ui/status", "alice", nil, map[string]string{"Cookie": ""})
	var ck *http.Cookie
	for _, c := range w.Result().Cookies() {
		if c.Name == csrfCookie {
			ck = c
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || ck.Secure {
		t.Fatalf("CSRF cookie %+v", ck)
	}
	if want := h.c.sign("csrf", "alice", ck.Value); !strings.Contains(w.Body.String(), `name="csrf" value="`+want+`"`) {
		t.Fatal("the form does not carry the token of the cookie set")
	}
	// Over TLS the cookie is Secure.
	r := httptest.NewRequest("GET", "https://responder/ui/status", nil)
	r.SetBasicAuth("alice", "pw")
	w = httptest.NewRecorder()
	h.h.ServeHTTP(w, r)
	if cs := w.Result().Cookies(); len(cs) != 1 || !cs[0].Secure {
		t.Fatalf("cookies over TLS: %+v", cs)
	}
	// With a cookie, none is set again.
	if cs := h.req("GET", "/ui/status", "alice", nil, nil).Result().Cookies(); len(cs) != 0 {
		t.Fatalf("cookie set again: %+v", cs)
	}
}

func TestPostsNeedCSRFAndRole(t *testing.T) {
	for _, tc := range []struct {
		name, path, user string
		form             url.Values
		hdr              map[string]string
		code             int
	}{
		{"no auth", "/ui/actions/42/approve", "", url.Values{"csrf": {"x"}}, nil, 401},
		{"no token", "/ui/actions/42/approve", "alice", url.Values{}, nil, 403},
		{"wrong token", "/ui/actions/42/approve", "alice", url.Values{"csrf": {"AAAA"}}, nil, 403},
		{"another user's token", "/ui/actions/42/approve", "alice", url.Values{"csrf": {"carol"}}, nil, 403},
		{"no cookie", "/ui/actions/42/approve", "alice", url.Values{"csrf": {"alice"}}, map[string]string{"Cookie": ""}, 403},
		{"another cookie", "/ui/actions/42/approve", "alice", url.Values{"csrf": {"alice"}},
			map[string]string{"Cookie": csrfCookie + "=" + b64.EncodeToString([]byte("another nonce, 24 bytes!"))}, 403},
		{"cross-site", "/ui/actions/42/approve", "alice", url.Values{"csrf": {"alice"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"read role approves", "/ui/actions/42/approve", "bob", url.Values{"csrf": {"bob"}}, nil, 403},
		{"read role pauses", "/ui/pause", "bob", url.Values{"csrf": {"bob"}}, nil, 403},
		{"read role resets", "/ui/breakers/reset", "bob", url.Values{"csrf": {"bob"}, "handler": {"k8s.restart_pod"}, "scope": {"shop"}}, nil, 403},
		{"admin not approver", "/ui/actions/42/deny", "carol", url.Values{"csrf": {"carol"}}, nil, 403},
		{"approver", "/ui/actions/42/approve", "alice", url.Values{"csrf": {"alice"}}, nil, 303},
		{"same-origin", "/ui/actions/42/deny", "alice", url.Values{"csrf": {"alice"}}, map[string]string{"Sec-Fetch-Site": "same-origin"}, 303},
		{"admin pauses", "/ui/pause", "carol", url.Values{"csrf": {"carol"}, "duration": {"30m"}, "reason": {"deploy"}}, nil, 303},
		{"admin resumes", "/ui/resume", "carol", url.Values{"csrf": {"carol"}}, nil, 303},
		{"admin resets", "/ui/breakers/reset", "carol", url.Values{"csrf": {"carol"}, "handler": {"k8s.restart_pod"}, "scope": {"shop"}}, nil, 303},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			// A csrf value naming a user stands for that user's valid token.
			if u := tc.form.Get("csrf"); users[u] != identity.RoleNone {
				tc.form.Set("csrf", h.token(u))
			}
			w := h.req("POST", tc.path, tc.user, tc.form, tc.hdr)
			if w.Code != tc.code {
				t.Fatalf("POST %s as %q: %d %s, want %d", tc.path, tc.user, w.Code, w.Body, tc.code)
			}
			changed := len(h.st.decisions) + len(h.st.pauses) + len(h.st.resets)
			if (tc.code == 303) != (changed == 1) {
				t.Fatalf("%d changes (decisions %v, pauses %v, resets %v)", changed, h.st.decisions, h.st.pauses, h.st.resets)
			}
		})
	}
}

func TestDecisionRecordsThePrincipalAndComesBack(t *testing.T) {
	h := newHarness(t)
	w := h.req("POST", "/ui/actions/42/approve", "alice", url.Values{"csrf": {h.token("alice")}, "back": {"/ui/incidents/7?refresh=off"}}, nil)
	if w.Code != 303 || w.Header().Get("Location") != "/ui/incidents/7?refresh=off" {
		t.Fatalf("approve: %d, Location %q", w.Code, w.Header().Get("Location"))
	}
	if len(h.st.decisions) != 1 || h.st.decisions[0] != "42 alice approve web" {
		t.Fatalf("decisions %v", h.st.decisions)
	}
	// The message is shown once, on the page it came back to.
	page := func(cookies []*http.Cookie) *httptest.ResponseRecorder {
		r := httptest.NewRequest("GET", "/ui/incidents/7", nil)
		r.SetBasicAuth("alice", "pw")
		for _, c := range cookies {
			r.AddCookie(c)
		}
		rw := httptest.NewRecorder()
		h.h.ServeHTTP(rw, r)
		return rw
	}
	got := page(w.Result().Cookies())
	if !strings.Contains(got.Body.String(), `<p id="flash" class="flash" role="status">Action 42 approved: it runs now.</p>`) {
		t.Fatalf("no message after the approval:\n%s", got.Body)
	}
	if cs := got.Result().Cookies(); len(cs) < 1 || cs[len(cs)-1].Name != flashCookie || cs[len(cs)-1].MaxAge >= 0 {
		t.Fatalf("the message is not cleared: %+v", cs)
	}
	// A forged message (wrong signature) is not shown.
	forged := &http.Cookie{Name: flashCookie, Value: "ok." + b64.EncodeToString([]byte("call 555")) + ".AAAA"}
	if strings.Contains(page([]*http.Cookie{forged}).Body.String(), "call 555") {
		t.Fatal("a forged message was shown")
	}

	// A double click: the engine says replay; the page says so.
	h.st.replay = true
	w = h.req("POST", "/ui/actions/42/approve", "alice", url.Values{"csrf": {h.token("alice")}}, nil)
	if f := h.flashOf(w); w.Header().Get("Location") != "/ui/actions" || !strings.Contains(f, "already approved it") {
		t.Fatalf("replay: Location %q, message %q", w.Header().Get("Location"), f)
	}
	// Refusals of the approval policy are shown as they are.
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("%w: its approval window (approvals.ttl 15m0s) has passed", store.ErrNotAwaiting), "approval window"},
		{store.ErrAnonymousApprover, "distinct named approvers"},
		{store.ErrNotFound, "does not exist"},
		{errors.New("connection refused to 10.0.0.1"), "database unavailable"},
	} {
		h.st.decideErr = tc.err
		w = h.req("POST", "/ui/actions/42/deny", "alice", url.Values{"csrf": {h.token("alice")}, "back": {"//evil.example.com/"}}, nil)
		if f := h.flashOf(w); w.Code != 303 || w.Header().Get("Location") != "/ui/actions" || !strings.Contains(f, tc.want) || strings.Contains(f, "10.0.0.1") {
			t.Errorf("%v: %d Location %q message %q", tc.err, w.Code, w.Header().Get("Location"), f)
		}
	}
}

// flashOf is the message a POST's answer left.
func (h *harness) flashOf(w *httptest.ResponseRecorder) string {
	r := httptest.NewRequest("GET", "/ui/actions", nil)
	for _, c := range w.Result().Cookies() {
		r.AddCookie(c)
	}
	f := h.c.takeFlash(httptest.NewRecorder(), r)
	if f == nil {
		return ""
	}
	return f.Text
}

func TestPauseForm(t *testing.T) {
	for _, tc := range []struct {
		duration, reason string
		want, message    string
	}{
		{"", "deploy", `pause alice "deploy" 0s`, "until resumed"},
		{"90m", "", `pause alice "" 1h30m0s`, "Paused until 2026-12-05 04:30:00Z"},
		{"1d", "x", `pause alice "x" 24h0m0s`, "Paused until 2026-12-06"},
		{"soon", "x", "", "positive duration"},
		{"-5m", "x", "", "positive duration"},
		{"5m", strings.Repeat("x", 501), "", "at most 500"},
	} {
		h := newHarness(t)
		w := h.req("POST", "/ui/pause", "alice", url.Values{"csrf": {h.token("alice")}, "duration": {tc.duration}, "reason": {tc.reason}}, nil)
		if w.Code != 303 || w.Header().Get("Location") != "/ui/status" {
			t.Fatalf("pause %q: %d %q", tc.duration, w.Code, w.Header().Get("Location"))
		}
		if got := strings.Join(h.st.pauses, ""); got != tc.want {
			t.Errorf("pause %q: %q, want %q", tc.duration, got, tc.want)
		}
		if f := h.flashOf(w); !strings.Contains(f, tc.message) {
			t.Errorf("pause %q: message %q, want %q", tc.duration, f, tc.message)
		}
	}
	h := newHarness(t)
	w := h.req("POST", "/ui/breakers/reset", "alice", url.Values{"csrf": {h.token("alice")}, "handler": {"http.request"}, "scope": {"nowhere"}}, nil)
	if f := h.flashOf(w); !strings.Contains(f, "no breaker for http.request on nowhere") {
		t.Fatalf("reset of a missing breaker: %q", f)
	}
}

func TestRolesSeeTheirButtons(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		user, path string
		present    []string
		absent     []string
	}{
		{"alice", "/ui/incidents/7", []string{`id="approve-42"`, `id="deny-42"`, `name="csrf"`}, nil},
		{"alice", "/ui/actions", []string{`id="approve-42"`, `id="deny-42"`, "Expires in 10m00s"}, []string{`id="not-approver"`}},
		{"alice", "/ui/status", []string{`id="pause"`, `id="resume"`, `id="reset-k8s.restart_pod-shop"`}, nil},
		{"carol", "/ui/incidents/7", nil, []string{`id="approve-42"`, `id="deny-42"`}},
		{"carol", "/ui/actions", []string{`not in approvals.approvers.web`}, []string{`id="approve-42"`}},
		{"carol", "/ui/status", []string{`id="pause"`, `id="resume"`}, nil},
		// bob is in the approvers list, but read-only: no form at all.
		{"bob", "/ui/incidents/7", nil, []string{"<form method=\"post\"", `name="csrf"`}},
		{"bob", "/ui/actions", []string{"(read-only)"}, []string{"<form method=\"post\""}},
		{"bob", "/ui/status", []string{"PAUSED", "by carol (db maintenance)", "2 left", "12 messages", "2 not replayed"}, []string{"<form method=\"post\"", `name="csrf"`}},
	} {
		body := h.req("GET", tc.path, tc.user, nil, nil).Body.String()
		for _, s := range tc.present {
			if !strings.Contains(body, s) {
				t.Errorf("%s on %s: %q missing", tc.user, tc.path, s)
			}
		}
		for _, s := range tc.absent {
			if strings.Contains(body, s) {
				t.Errorf("%s on %s: %q present", tc.user, tc.path, s)
			}
		}
	}
}

func TestHostileLabelsAreText(t *testing.T) {
	h := newHarness(t)
	for _, p := range []string{"/ui/", "/ui/incidents/7", "/ui/actions", "/ui/audit"} {
		body := h.req("GET", p, "alice", nil, nil).Body.String()
		if strings.Contains(body, hostile) || strings.Contains(body, "<script") {
			t.Errorf("%s: the hostile label is markup", p)
		}
		if !strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") {
			t.Errorf("%s: the hostile label is not shown as text", p)
		}
	}
	body := h.req("GET", "/ui/incidents/7", "alice", nil, nil).Body.String()
	for _, tc := range []struct {
		what string
		ok   bool
	}{
		{`href="javascript:`, false},
		{`id="runbook"`, false}, // javascript: is no link
		{`javascript:alert(1)`, true},
		{`<a id="dashboard" href="https://grafana.example.com/d/pods?var-pod=x&amp;from=now-1h" rel="noreferrer">Dashboard</a>`, true},
		{`<a id="source" href="http://prometheus:9090/graph?g0.expr=up" rel="noreferrer">Source</a>`, true},
		{`href="https://example.com/not-a-link-key"`, false}, // only runbook_url and dashboard_url are links
		{`&#34;Authorization&#34;: &#34;&lt;secret&gt;&#34;`, true},
		{"Params (secrets hidden)", true},
		{"check: ok; budget k8s: 1 of 3 used", true},
		{"PDB allows 1 disruption", true},
	} {
		if strings.Contains(body, tc.what) != tc.ok {
			t.Errorf("incident page: %q present = %v, want %v", tc.what, !tc.ok, tc.ok)
		}
	}
}

func TestSafeLink(t *testing.T) {
	for in, want := range map[string]string{
		"https://runbooks.example.com/x": "https://runbooks.example.com/x",
		"http://grafana:3000/d/1?a=b":    "http://grafana:3000/d/1?a=b",
		"javascript:alert(1)":            "",
		"JavaScript:alert(1)":            "",
		" javascript:alert(1)":           "",
		"data:text/html,<b>x</b>":        "",
		"//evil.example.com/x":           "",
		"/ui/status":                     "",
		"https:///nohost":                "",
		"ftp://files.example.com/x":      "",
		"":                               "",
	} {
		if got := safeLink(in); got != want {
			t.Errorf("safeLink(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBackStaysInTheConsole(t *testing.T) {
	for in, want := range map[string]string{
		"/ui/incidents/7":              "/ui/incidents/7",
		"/ui/incidents/7?refresh=off":  "/ui/incidents/7?refresh=off",
		"//evil.example.com/":          "/ui/actions",
		"/ui//evil.example.com/":       "/ui/actions",
		"https://evil.example.com/ui/": "/ui/actions",
		"/ui/\\evil":                   "/ui/actions",
		"":                             "/ui/actions",
	} {
		r := httptest.NewRequest("POST", "/ui/actions/1/approve", strings.NewReader(url.Values{"back": {in}}.Encode()))
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if got := backTo(r, "/ui/actions"); got != want {
			t.Errorf("backTo(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAutoRefreshToggle(t *testing.T) {
	h := newHarness(t)
	on := h.req("GET", "/ui/?rule=restart-pod", "bob", nil, nil).Body.String()
	if !strings.Contains(on, `<meta http-equiv="refresh" content="30">`) || !strings.Contains(on, `<a id="refresh-toggle" href="/ui/?refresh=off&amp;rule=restart-pod">turn off</a>`) {
		t.Fatalf("auto-refresh on:\n%s", on)
	}
	off := h.req("GET", "/ui/?rule=restart-pod&refresh=off", "bob", nil, nil).Body.String()
	if strings.Contains(off, `http-equiv="refresh"`) || !strings.Contains(off, `<a id="refresh-toggle" href="/ui/?rule=restart-pod">turn on</a>`) ||
		!strings.Contains(off, `<input type="hidden" name="refresh" value="off">`) {
		t.Fatalf("auto-refresh off:\n%s", off)
	}
	if !strings.Contains(on, `<a id="awaiting-count" href="/ui/actions">1 awaiting approval</a>`) {
		t.Fatal("no count of the actions awaiting approval")
	}
	if body := h.req("GET", "/ui/?rule=other", "bob", nil, nil).Body.String(); !strings.Contains(body, "No incidents match the filter.") {
		t.Fatal("an empty filter result is not said")
	}
	// The status page holds forms being typed into: it does not refresh itself.
	if body := h.req("GET", "/ui/status", "alice", nil, nil).Body.String(); strings.Contains(body, `http-equiv="refresh"`) {
		t.Fatal("the status page refreshes itself")
	}
}

func TestAuditFilterFields(t *testing.T) {
	for _, tc := range []struct {
		d    auditData
		want store.AuditFilter
		err  string
	}{
		{auditData{}, store.AuditFilter{}, ""},
		{auditData{Incident: "7", Rule: "r", Since: "2026-12-05T03:00", Until: "2026-12-05"},
			store.AuditFilter{IncidentID: 7, Rule: "r", Since: t0, Until: time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)}, ""},
		{auditData{Since: "2026-12-05T04:00:00+01:00"}, store.AuditFilter{Since: t0}, ""},
		{auditData{Incident: "-1"}, store.AuditFilter{}, "incident"},
		{auditData{Until: "tomorrow"}, store.AuditFilter{}, "until"},
	} {
		f, err := auditFilter(&tc.d)
		if (err != nil) != (tc.err != "") || (err != nil && !strings.Contains(err.Error(), tc.err)) {
			t.Errorf("%+v: error %v, want %q", tc.d, err, tc.err)
			continue
		}
		if err == nil && (f.IncidentID != tc.want.IncidentID || f.Rule != tc.want.Rule || !f.Since.Equal(tc.want.Since) || !f.Until.Equal(tc.want.Until)) {
			t.Errorf("%+v: %+v, want %+v", tc.d, f, tc.want)
		}
	}
}

// TestIncidentPageGolden keeps the incident page's markup stable (browser tests find its ids):
// regenerate with go test ./console -run Golden -update after a deliberate change.
func TestIncidentPageGolden(t *testing.T) {
	h := newHarness(t)
	w := h.req("GET", "/ui/incidents/7", "alice", nil, nil)
	// The style sheet's version changes with the style sheet, not the markup.
	got := regexp.MustCompile(`style\.css\?v=[0-9a-f]+`).ReplaceAll(w.Body.Bytes(), []byte("style.css?v=HASH"))
	path := filepath.Join("testdata", "incident.golden.html")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("the incident page differs from %s (go test ./console -run Golden -update, then review the diff):\n%s", path, got)
	}
}

func TestHumanDurations(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 1500 * time.Millisecond: "2s", 10 * time.Minute: "10m00s", 61*time.Minute + 20*time.Second: "1h01m",
		-3 * time.Minute: "3m00s", 50 * time.Hour: "2d02h",
	} {
		if got := human(d); got != want {
			t.Errorf("human(%v) = %q, want %q", d, got, want)
		}
	}
}

// TestVerifyingActionRenders: an action waiting for its rule's verify shows its state and its
// deadline; once settled, the deadline it had.
func TestVerifyingActionRenders(t *testing.T) {
	tests := []struct {
		state vocab.State
		want  string
	}{
		{vocab.StateVerifying, `<dt>verify</dt><dd>until ` + stamp(t0.Add(2*time.Minute)) + ` (2m00s left)</dd>`},
		{vocab.StateFailed, `<dt>verify</dt><dd>deadline ` + stamp(t0.Add(2*time.Minute)) + `</dd>`},
	}
	for _, tc := range tests {
		t.Run(string(tc.state), func(t *testing.T) {
			h := newHarness(t)
			deadline := t0.Add(2 * time.Minute)
			a := &h.st.inc.Actions[0]
			a.State, a.Approval, a.VerifyDeadline = tc.state, "none", &deadline
			body := h.req("GET", "/ui/incidents/7", "alice", nil, nil).Body.String()
			for _, want := range []string{`<span class="badge st-` + string(tc.state) + `">` + string(tc.state) + `</span>`, tc.want} {
				if !strings.Contains(body, want) {
					t.Errorf("the incident page lacks %s:\n%s", want, body)
				}
			}
		})
	}
}

// TestDrillsPage: the drill runs, newest first, each with its outcome and its recovery against
// its RTO (late in red), its failure, and a link to its incidents; a label the run holds is text.
func TestDrillsPage(t *testing.T) {
	h := newHarness(t)
	yes, no := true, false
	rec, late := 42.0, 400.0
	fin := t0.Add(-time.Minute)
	h.st.drills = []store.DrillRun{
		{ID: 3, RunID: "api-down-20261205T025900Z-beef", Name: "api-down", Trigger: "cli", Actor: "ops", Probes: []string{}, RTOSeconds: 300,
			StartedAt: t0.Add(-time.Minute)},
		{ID: 2, RunID: "api-down-20261205T020000Z-0a0a", Name: "api-down", Trigger: "schedule", Actor: "schedule", Probes: []string{"pg"},
			RTOSeconds: 300, StartedAt: t0.Add(-time.Hour), FinishedAt: &fin, Passed: &no, RecoverSeconds: &late, Failure: "recover " + hostile + " exceeds the RTO"},
		{ID: 1, RunID: "db-failover-20261205T010000Z-1234", Name: "db-failover", Trigger: "cli", Actor: "ops", Probes: []string{},
			RTOSeconds: 60, StartedAt: t0.Add(-2 * time.Hour), FinishedAt: &fin, Passed: &yes, RecoverSeconds: &rec},
	}
	body := h.req("GET", "/ui/drills", "bob", nil, nil).Body.String()
	for _, want := range []string{
		`<a href="/ui/drills" aria-current="page">Drills</a>`,
		`<li id="drill-3"><span class="badge st-running">running</span> <strong>api-down</strong> <a href="/ui/?drill=api-down-20261205T025900Z-beef" class="target">api-down-20261205T025900Z-beef</a>`,
		`<li id="drill-2"><span class="badge st-failed">failed</span>`,
		`recovered in <span class="st-failed">6m40s of 5m00s</span>`,
		`<span class="failure">recover &lt;script&gt;alert(1)&lt;/script&gt; exceeds the RTO</span>`,
		`<li id="drill-1"><span class="badge st-passed">passed</span>`,
		`recovered in <span class="st-passed">42s of 1m00s</span>`,
		`RTO 5m00s`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("the drills page lacks %s:\n%s", want, body)
		}
	}
	if strings.Index(body, `id="drill-3"`) > strings.Index(body, `id="drill-1"`) {
		t.Error("runs are not newest first")
	}
	if body := h.req("GET", "/ui/drills?name=none", "bob", nil, nil).Body.String(); !strings.Contains(body, "No drill runs of none.") {
		t.Errorf("an empty filter result is not said:\n%s", body)
	}
}

// TestDrillIncidentsAreMarked: a drill's incident says DRILL in the list and on its page (with
// its run), and so do its actions; an incident not a drill's does not.
func TestDrillIncidentsAreMarked(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/ui/", "/ui/incidents/7", "/ui/actions"} {
		if body := h.req("GET", path, "bob", nil, nil).Body.String(); strings.Contains(body, "DRILL") {
			t.Errorf("%s marks an incident that is not a drill's", path)
		}
	}
	run := "api-down-20261205T025900Z-beef"
	h.st.inc.Drill = run
	h.st.inc.Actions[0].Drill = run
	list := h.req("GET", "/ui/?drill="+run, "bob", nil, nil).Body.String()
	if !strings.Contains(list, `<li id="incident-7"><span class="badge st-firing">firing</span> <span class="badge drill" title="drill run `+run+`">DRILL</span>`) ||
		!strings.Contains(list, `<input name="drill" value="`+run+`"`) {
		t.Errorf("the incident list does not mark the drill:\n%s", list)
	}
	page := h.req("GET", "/ui/incidents/7", "bob", nil, nil).Body.String()
	for _, want := range []string{`<span class="badge drill" id="drill">DRILL</span> Incident 7`, `run <a href="/ui/?drill=` + run + `" class="target">`,
		`<span class="badge st-awaiting-approval">awaiting_approval</span> <span class="badge drill" title="drill run ` + run + `">DRILL</span>`} {
		if !strings.Contains(page, want) {
			t.Errorf("the incident page lacks %s:\n%s", want, page)
		}
	}
	if body := h.req("GET", "/ui/actions", "bob", nil, nil).Body.String(); !strings.Contains(body, `DRILL</span>`) {
		t.Errorf("the approvals page does not mark the drill's action:\n%s", body)
	}
}

package page

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testNow is the fixed clock of the Teams and email tests.
var testNow = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// diskAlert is a firing alert with everything a notification shows.
func diskAlert() alert.Alert {
	a := alert.Alert{Name: "data-disk", Source: alert.SourceProbe, Status: alert.StatusFiring,
		Labels: map[string]string{"alertname": "data-disk", "severity": "critical", "instance": "db-1:/var/lib/data",
			"probe_kind": "disk", "team": "storage"},
		Annotations: map[string]string{"summary": "db-1 has 4% free disk space",
			"runbook_url": "https://runbooks.example.com/disk-low", "dashboard_url": "javascript:alert(1)"},
		GeneratorURL: "http://prometheus.internal:9090/graph?g0.expr=disk_free",
		StartsAt:     testNow.Add(-3 * time.Minute), ReceivedAt: testNow}
	a.Fingerprint = alert.Fingerprint(a.Labels)
	return a
}

// newTeams returns page.teams posting to f, with a fixed clock and recorded backoff waits.
func newTeams(t *testing.T, f *fakeTeams, o TeamsOptions) (*Teams, *[]time.Duration) {
	t.Helper()
	o.URL, o.Version = f.url(), "test"
	h := NewTeams(o)
	if err := h.ConfigError(); err != nil {
		t.Fatal(err)
	}
	var waits []time.Duration
	h.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }
	h.now = func() time.Time { return testNow }
	return h, &waits
}

func buildTeams(t *testing.T, h *Teams, p handlers.Params) *TeamsAction {
	t.Helper()
	a, err := h.Build(p)
	if err != nil {
		t.Fatalf("Build(%v): %v", p, err)
	}
	return a.(*TeamsAction)
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; -update rewrites it):\n%s", path, diff)
	}
}

func indentJSON(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	out.WriteByte('\n')
	return out.Bytes()
}

// TestTeamsCards posts each kind of card to the fake, which checks what Teams requires, and
// compares the card with its golden file.
func TestTeamsCards(t *testing.T) {
	bare := alert.Alert{Name: "KubePodCrashLooping", Status: alert.StatusFiring, Labels: map[string]string{"alertname": "KubePodCrashLooping"}}
	tests := []struct {
		name   string
		params handlers.Params
		alert  alert.Alert
		inv    handlers.Invocation
	}{
		{name: "firing-defaults", params: handlers.Params{}, alert: diskAlert(), inv: inv("responder-action-7", 42)},
		{name: "firing-params", alert: diskAlert(), inv: inv("responder-action-8", 42), params: handlers.Params{
			"title": "db-1 disk\nalmost full", "text": "Free space is **4%**.\nClean up `/var/lib/data`.",
			"links": []any{"https://grafana.example.com/d/disk", "https://runbooks.example.com/disk-low"}}},
		{name: "resolved", params: handlers.Params{"title": "db-1 disk almost full", "status": "resolved"}, alert: diskAlert(),
			inv: inv("responder-action-9", 42)},
		{name: "bare-alert", params: handlers.Params{}, alert: bare, inv: inv("", 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeTeams(t)
			h, _ := newTeams(t, f, TeamsOptions{})
			res, err := buildTeams(t, h, tt.params).Do(t.Context(), tt.inv, tt.alert)
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			posts, cards := f.got()
			if len(posts) != 1 || len(cards) != 1 {
				t.Fatalf("%d posts, %d accepted by the fake", len(posts), len(cards))
			}
			golden(t, "teams-"+tt.name+".json", indentJSON(t, cards[0]))
			if !strings.HasPrefix(res.Detail, "firing card posted to 127.0.0.1:") && !strings.HasPrefix(res.Detail, "resolved card posted") {
				t.Errorf("detail %q", res.Detail)
			}
			if strings.Contains(res.Detail, teamsSig) {
				t.Errorf("detail %q holds the signature", res.Detail)
			}
		})
	}
}

const connectorFailed = "Webhook message delivery failed with error: Microsoft Teams endpoint returned HTTP error %d with ContextId tcid=0,server=msgapi-production,cv=x"

func TestTeamsAnswers(t *testing.T) {
	ok, legacyOK := teamsAnswer{code: 202}, teamsAnswer{code: 200, body: "1"}
	failed := func(code int) teamsAnswer { return teamsAnswer{code: 200, body: fmt.Sprintf(connectorFailed, code)} }
	tests := []struct {
		name       string
		script     []teamsAnswer
		wantReason vocab.Reason // "" = delivered
		wantPosts  int
		wantErr    string
	}{
		{name: "Workflows 202", script: []teamsAnswer{ok}, wantPosts: 1},
		{name: "incoming webhook 200 1", script: []teamsAnswer{legacyOK}, wantPosts: 1},
		{name: "5xx retried", script: []teamsAnswer{{code: 502}, {code: 503}, ok}, wantPosts: 3},
		{name: "5xx until the retries are spent", script: []teamsAnswer{{code: 500}}, wantReason: vocab.ReasonServerError, wantPosts: 3,
			wantErr: "attempt 3: 500 Internal Server Error"},
		{name: "429 retried", script: []teamsAnswer{{code: 429}, ok}, wantPosts: 2},
		{name: "a connector's 200 with HTTP error 429 is a 429", script: []teamsAnswer{failed(429), legacyOK}, wantPosts: 2},
		{name: "a connector's 200 with HTTP error 502 is a 502", script: []teamsAnswer{failed(502)}, wantReason: vocab.ReasonServerError,
			wantPosts: 3, wantErr: "Webhook message delivery failed"},
		{name: "a connector's 200 with HTTP error 413 is final", script: []teamsAnswer{failed(413)}, wantReason: vocab.ReasonClientError,
			wantPosts: 1},
		{name: "a connector's 200 with HTTP error 400 is final", script: []teamsAnswer{failed(400)}, wantReason: vocab.ReasonClientError,
			wantPosts: 1},
		{name: "a connector's failure without a status is retried", script: []teamsAnswer{{code: 200, body: "Webhook message delivery failed"}, ok},
			wantPosts: 2},
		{name: "404 is final", script: []teamsAnswer{{code: 404}}, wantReason: vocab.ReasonClientError, wantPosts: 1},
		{name: "redirects are not followed", script: []teamsAnswer{{code: 307}}, wantReason: vocab.ReasonClientError, wantPosts: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeTeams(t, tt.script...)
			h, waits := newTeams(t, f, TeamsOptions{})
			_, err := buildTeams(t, h, handlers.Params{}).Do(t.Context(), inv("responder-action-1", 1), diskAlert())
			posts, _ := f.got()
			if len(posts) != tt.wantPosts {
				t.Errorf("%d posts, want %d", len(posts), tt.wantPosts)
			}
			if len(*waits) != tt.wantPosts-1 {
				t.Errorf("%d backoff waits for %d posts", len(*waits), len(posts))
			}
			switch {
			case tt.wantReason == "" && err != nil:
				t.Fatalf("Do: %v", err)
			case tt.wantReason != "" && handlers.ReasonOf(err) != tt.wantReason:
				t.Fatalf("Do = %v (reason %q), want reason %q", err, handlers.ReasonOf(err), tt.wantReason)
			case err != nil && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q lacks %q", err, tt.wantErr)
			}
		})
	}
}

// TestTeamsPostsOnce: an action whose card was delivered is not posted again when it runs again,
// while a failed one is (the engine requeues it), and another action posts its own card.
func TestTeamsPostsOnce(t *testing.T) {
	f := newFakeTeams(t, teamsAnswer{code: 500}, teamsAnswer{code: 202})
	h, _ := newTeams(t, f, TeamsOptions{Retries: -1})
	a := buildTeams(t, h, handlers.Params{})
	steps := []struct {
		key        string
		wantPosts  int
		wantReason vocab.Reason
		wantDetail string
	}{
		{"responder-action-1", 1, vocab.ReasonServerError, ""},  // 500: not delivered
		{"responder-action-1", 2, "", "firing card posted"},     // the engine's retry
		{"responder-action-1", 2, "", "already posted: firing"}, // delivered: not again
		{"responder-action-2", 3, "", "firing card posted"},     // another action
	}
	for i, s := range steps {
		res, err := a.Do(t.Context(), inv(s.key, 1), diskAlert())
		if handlers.ReasonOf(err) != s.wantReason && (err != nil || s.wantReason != "") {
			t.Fatalf("step %d: Do = %v, want reason %q", i, err, s.wantReason)
		}
		if posts, _ := f.got(); len(posts) != s.wantPosts {
			t.Fatalf("step %d: %d posts, want %d", i, len(posts), s.wantPosts)
		}
		if !strings.HasPrefix(res.Detail, s.wantDetail) {
			t.Errorf("step %d: detail %q, want %q...", i, res.Detail, s.wantDetail)
		}
	}
}

// TestTeamsURLNeverShown: the webhook URL's signature appears in no error, result or log line,
// even when the endpoint echoes it back.
func TestTeamsURLNeverShown(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFakeTeams(t)
	f.script = []teamsAnswer{{code: 400, body: "bad request to " + f.url()}}
	h, _ := newTeams(t, f, TeamsOptions{Logger: logger})
	_, err := buildTeams(t, h, handlers.Params{}).Do(t.Context(), inv("k", 1), diskAlert())
	if err == nil || !strings.Contains(err.Error(), "bad request to") {
		t.Fatalf("Do = %v, want the echo", err)
	}
	ln, lerr := net.Listen("tcp", "127.0.0.1:0")
	if lerr != nil {
		t.Fatal(lerr)
	}
	refused := "http://" + ln.Addr().String() + "/hook?sig=" + teamsSig
	ln.Close()
	h2 := NewTeams(TeamsOptions{URL: refused, Logger: logger, Retries: -1})
	a2, berr := h2.Build(handlers.Params{})
	if berr != nil {
		t.Fatal(berr)
	}
	_, err2 := a2.Do(t.Context(), inv("k", 1), diskAlert())
	if handlers.ReasonOf(err2) != vocab.ReasonServerError {
		t.Fatalf("Do to a closed port = %v, want server_error", err2)
	}
	for what, s := range map[string]string{"error": err.Error(), "refused error": err2.Error(), "logs": logs.String(),
		"target": a2.Target(), "spec": fmt.Sprintf("%+v", h2.Spec())} {
		if strings.Contains(s, teamsSig) || strings.Contains(s, "0123456789abcdef") {
			t.Errorf("%s shows the URL's secret: %s", what, s)
		}
	}
}

func TestTeamsUnconfigured(t *testing.T) {
	tests := []struct{ name, url, want string }{
		{"no url", "", "handlers.page.teams is not configured"},
		{"ftp", "ftp://teams.example.com/x", `scheme "ftp"`},
		{"no host", "https:///x", "has no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := NewTeams(TeamsOptions{URL: tt.url})
			reg, err := handlers.NewRegistry(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := reg.CheckAction(TeamsName, "", map[string]any{"title": "x"}); err != nil {
				t.Errorf("a rule for an unconfigured page.teams must load: %v", err)
			}
			_, err = h.Build(handlers.Params{})
			if handlers.ReasonOf(err) != vocab.ReasonBadParam || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Build = %v, want bad_param containing %q", err, tt.want)
			}
		})
	}
}

func TestTeamsCheckAction(t *testing.T) {
	reg, err := handlers.NewRegistry(NewTeams(TeamsOptions{URL: "https://prod-01.westeurope.logic.azure.com/workflows/x?sig=y"}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		raw     map[string]any
		wantErr string
	}{
		{"no params", map[string]any{}, ""},
		{"everything", map[string]any{"title": "{{ alert.labels.pod }} down", "text": "{{ alert.annotations.summary }}",
			"links": []any{"https://runbooks.example.com/x", "{{ alert.annotations.dashboard }}"}, "status": "resolved"}, ""},
		{"templated status", map[string]any{"status": "{{ alert.status }}"}, "may not be templated"},
		{"unknown status", map[string]any{"status": "acknowledged"}, `status "acknowledged"`},
		{"bad link", map[string]any{"links": []any{"javascript:alert(1)"}}, "not an absolute http(s) URL"},
		{"unknown param", map[string]any{"summary": "x"}, `no param "summary"`},
		{"secret in text", map[string]any{"text": `{{ secret("x") }}`}, "cannot hold a secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reg.CheckAction(TeamsName, "none", tt.raw)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckAction: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CheckAction = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestTeamsSpec(t *testing.T) {
	h := NewTeams(TeamsOptions{URL: "https://Prod-01.WestEurope.logic.azure.com:443/workflows/x?sig=y"})
	s := h.Spec()
	if s.Name != "page.teams" || s.Class != vocab.ClassNotify || s.DefaultApproval != handlers.ApprovalNone || !s.TargetPerIncident {
		t.Errorf("Spec = %+v", s)
	}
	if s.DefaultTimeout < 3*DefaultTimeout {
		t.Errorf("DefaultTimeout %s is shorter than three attempts", s.DefaultTimeout)
	}
	a, err := h.Build(handlers.Params{})
	if err != nil {
		t.Fatal(err)
	}
	if a.Target() != "teams:prod-01.westeurope.logic.azure.com" || a.Scope() != "prod-01.westeurope.logic.azure.com" {
		t.Errorf("target %q, scope %q", a.Target(), a.Scope())
	}
	p, ok := s.ResolveParams(handlers.Params{"title": "x"})
	if !ok || !cmp.Equal(p, handlers.Params{"title": "x", "status": "resolved"}) {
		t.Errorf("ResolveParams = %v, %v", p, ok)
	}
	if _, ok := s.ResolveParams(p); ok {
		t.Error("a resolved card has a resolve of its own")
	}
}

func TestConnectorFailure(t *testing.T) {
	tests := []struct {
		body     string
		wantCode int
		wantOK   bool
	}{
		{"1", 0, false},
		{"", 0, false},
		{fmt.Sprintf(connectorFailed, 429), 429, true},
		{"  " + fmt.Sprintf(connectorFailed, 413), 413, true},
		{"Webhook message delivery failed with error: something", 500, true},
		{"Webhook message delivery failed with error: HTTP error 4x", 500, true},
		{"Webhook message delivery failed with error: HTTP error 042", 500, true},
		{"ok: Webhook message delivery failed", 0, false},
	}
	for _, tt := range tests {
		code, ok := connectorFailure([]byte(tt.body))
		if code != tt.wantCode || ok != tt.wantOK {
			t.Errorf("connectorFailure(%q) = %d, %v; want %d, %v", tt.body, code, ok, tt.wantCode, tt.wantOK)
		}
	}
}

// TestTeamsCardBounds: a card of the largest alert stays under Teams's 28 KB.
func TestTeamsCardBounds(t *testing.T) {
	al := diskAlert()
	for i := range 64 {
		al.Labels[fmt.Sprintf("label_%02d", i)] = strings.Repeat("v", 2048)
	}
	al.Annotations["summary"] = strings.Repeat("s", 64<<10)
	info := incidentInfo{ID: 1, Rule: strings.Repeat("r", 500)}
	for i := range 30 {
		info.Actions = append(info.Actions, actionState{ID: int64(i), Handler: "http.request", Target: strings.Repeat("t", 3000), State: vocab.StateFailed})
	}
	h := NewTeams(TeamsOptions{URL: "https://teams.example.com/x"})
	a := buildTeams(t, h, handlers.Params{"title": strings.Repeat("é", 5000), "text": strings.Repeat("x", 100_000)})
	b, err := a.card(info, al, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > maxCardBytes {
		t.Errorf("card has %d bytes, more than %d", len(b), maxCardBytes)
	}
	if err := checkTeamsMessage(b); err != nil {
		t.Errorf("card is malformed: %v", err)
	}
}

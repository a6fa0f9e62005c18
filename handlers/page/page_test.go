package page

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"gopkg.in/yaml.v3"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/vocab"
)

const routingKey = "R0UT1NGK3Ysecretsecretsecret0123"

// step is how the pager answers one request.
type step struct {
	code  int
	body  string
	echo  bool   // answer with the request body (a pager that echoes what it got)
	pad   int    // bytes of padding before the echo
	loc   string // Location header
	block bool   // hold the request until the client gives up
}

type recorded struct {
	body   []byte
	header http.Header
}

// pager is a real HTTP server answering from a script (the last step repeats).
type pager struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	script  []step
	release chan struct{}
}

func newPager(t *testing.T, script ...step) *pager {
	t.Helper()
	p := &pager{script: script, release: make(chan struct{})}
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	t.Cleanup(func() { close(p.release) }) // runs before Close: unblocks held requests
	return p
}

func (p *pager) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	n := len(p.reqs)
	p.reqs = append(p.reqs, recorded{body: body, header: r.Header.Clone()})
	s := p.script[min(n, len(p.script)-1)]
	p.mu.Unlock()
	if s.block {
		select {
		case <-r.Context().Done():
		case <-p.release:
		}
		return
	}
	if s.loc != "" {
		w.Header().Set("Location", s.loc)
	}
	w.WriteHeader(s.code)
	if s.echo {
		_, _ = w.Write(append(bytes.Repeat([]byte("x"), s.pad), body...))
		return
	}
	_, _ = io.WriteString(w, s.body)
}

func (p *pager) requests() []recorded {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]recorded(nil), p.reqs...)
}

// waitRequests polls until the server has seen n requests (a server may record an abandoned
// request just after the client returned).
func (p *pager) waitRequests(t *testing.T, n int) []recorded {
	t.Helper()
	testwait.Until(t, 5*time.Second, fmt.Sprintf("%d requests at the server", n), func() bool { return len(p.requests()) >= n })
	return p.requests()
}

func (p *pager) url() string { return p.srv.URL + "/v2/enqueue" }

// newHandler returns a handler for p whose backoff waits are recorded instead of slept.
func newHandler(t *testing.T, p *pager, o Options) (*Handler, *[]time.Duration) {
	t.Helper()
	o.URL, o.RoutingKey, o.Version = p.url(), routingKey, "test"
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Second
	}
	h := New(o)
	var waits []time.Duration
	h.sleep = func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }
	return h, &waits
}

func mustBuild(t *testing.T, h *Handler, p handlers.Params) *Action {
	t.Helper()
	a, err := h.Build(p)
	if err != nil {
		t.Fatalf("Build(%v): %v", p, err)
	}
	return a.(*Action)
}

// inv is the invocation the engine gives Do: an idempotency key and an incident id.
func inv(key string, incident int64) handlers.Invocation {
	return handlers.Invocation{IdempotencyKey: key, IncidentID: incident}
}

func decode(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("request body %q is not a JSON object: %v", b, err)
	}
	return m
}

func TestDoSendsEvents(t *testing.T) {
	tests := []struct {
		name       string
		params     handlers.Params
		incident   int64
		want       map[string]any
		wantTarget string
		wantDetail string
	}{
		{name: "trigger with every param",
			params: handlers.Params{
				"summary": "checkout-7d9f is crash looping", "severity": "warning", "source": "kube-prod",
				"details": map[string]any{"namespace": "shop", "pod": "checkout-7d9f"},
				"links":   []any{"https://runbooks.example.com/crashloop", "http://grafana.internal/d/pods"},
			},
			incident: 42,
			want: map[string]any{
				"routing_key": routingKey, "event_action": "trigger", "dedup_key": "responder-incident-42",
				"payload": map[string]any{
					"summary": "checkout-7d9f is crash looping", "source": "kube-prod", "severity": "warning",
					"custom_details": map[string]any{"namespace": "shop", "pod": "checkout-7d9f"},
				},
				"links":  []any{map[string]any{"href": "https://runbooks.example.com/crashloop"}, map[string]any{"href": "http://grafana.internal/d/pods"}},
				"client": "responder",
			},
			wantTarget: "page:incident",
			wantDetail: `trigger responder-incident-42: 202 Accepted: {"status":"success","message":"Event processed","dedup_key":"responder-incident-42"}`},
		{name: "trigger defaults",
			params:   handlers.Params{"summary": "disk full"},
			incident: 7,
			want: map[string]any{
				"routing_key": routingKey, "event_action": "trigger", "dedup_key": "responder-incident-7",
				"payload": map[string]any{"summary": "disk full", "source": "responder", "severity": "critical"},
				"client":  "responder",
			},
			wantTarget: "page:incident"},
		{name: "dedup key from the param",
			params:   handlers.Params{"summary": "disk full", "dedup_key": "disk-db-1", "severity": "Error"},
			incident: 7,
			want: map[string]any{
				"routing_key": routingKey, "event_action": "trigger", "dedup_key": "disk-db-1",
				"payload": map[string]any{"summary": "disk full", "source": "responder", "severity": "error"},
				"client":  "responder",
			},
			wantTarget: "page:disk-db-1"},
		{name: "resolve omits payload and links",
			params:   handlers.Params{"summary": "recovered", "event_action": "resolve", "links": []any{"https://x.example.com"}},
			incident: 42,
			want: map[string]any{
				"routing_key": routingKey, "event_action": "resolve", "dedup_key": "responder-incident-42", "client": "responder",
			},
			wantTarget: "page:incident"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPager(t, step{code: 202, body: `{"status":"success","message":"Event processed","dedup_key":"responder-incident-42"}`})
			h, _ := newHandler(t, p, Options{})
			a := mustBuild(t, h, tt.params)
			if a.Target() != tt.wantTarget {
				t.Errorf("Target = %q, want %q", a.Target(), tt.wantTarget)
			}
			res, err := a.Do(t.Context(), inv("action-9", tt.incident), alert.Alert{})
			if err != nil {
				t.Fatalf("Do: %v", err)
			}
			if tt.wantDetail != "" && res.Detail != tt.wantDetail {
				t.Errorf("Detail = %q, want %q", res.Detail, tt.wantDetail)
			}
			reqs := p.requests()
			if len(reqs) != 1 {
				t.Fatalf("pager saw %d requests, want 1", len(reqs))
			}
			if diff := cmp.Diff(tt.want, decode(t, reqs[0].body)); diff != "" {
				t.Errorf("event (-want +got):\n%s", diff)
			}
			wantHeader := map[string]string{"Content-Type": "application/json", "User-Agent": "responder/test", "Idempotency-Key": "action-9"}
			for k, v := range wantHeader {
				if got := reqs[0].header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestDoNeedsADedupKey(t *testing.T) {
	p := newPager(t, step{code: 202})
	h, _ := newHandler(t, p, Options{})
	_, err := mustBuild(t, h, handlers.Params{"summary": "x"}).Do(t.Context(), handlers.Invocation{IdempotencyKey: "1"}, alert.Alert{})
	if handlers.ReasonOf(err) != vocab.ReasonBadParam {
		t.Fatalf("Do without incident or dedup_key = %v, want bad_param", err)
	}
	if n := len(p.requests()); n != 0 {
		t.Errorf("pager saw %d requests, want 0", n)
	}
}

func TestDoStatusSequences(t *testing.T) {
	tests := []struct {
		name       string
		script     []step
		timeout    time.Duration
		retries    int
		wantReason vocab.Reason // "" = success
		wantTries  int
	}{
		{name: "500 503 202", script: []step{{code: 500}, {code: 503}, {code: 202}}, wantTries: 3},
		{name: "429 then 202", script: []step{{code: 429}, {code: 202}}, wantTries: 2},
		{name: "200 also succeeds", script: []step{{code: 200}}, wantTries: 1},
		{name: "500 until the retries run out", script: []step{{code: 500, body: "boom"}}, wantReason: vocab.ReasonServerError, wantTries: 3},
		{name: "429 until the retries run out", script: []step{{code: 429}}, wantReason: vocab.ReasonServerError, wantTries: 3},
		{name: "400", script: []step{{code: 400, body: `{"status":"invalid event","message":"Event object is invalid"}`}},
			wantReason: vocab.ReasonClientError, wantTries: 1},
		{name: "503 then 404", script: []step{{code: 503}, {code: 404}}, wantReason: vocab.ReasonClientError, wantTries: 2},
		{name: "redirect is not followed", script: []step{{code: 307, loc: "http://127.0.0.1:1/steal"}},
			wantReason: vocab.ReasonClientError, wantTries: 1},
		{name: "no retries", script: []step{{code: 502}}, retries: -1, wantReason: vocab.ReasonServerError, wantTries: 1},
		{name: "timeout", script: []step{{block: true}}, timeout: 100 * time.Millisecond, retries: 1,
			wantReason: vocab.ReasonTimeout, wantTries: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPager(t, tt.script...)
			h, waits := newHandler(t, p, Options{Timeout: tt.timeout, Retries: tt.retries, Backoff: 100 * time.Millisecond})
			a := mustBuild(t, h, handlers.Params{"summary": "db-1 is down"})
			// The deadline makes a broken per-attempt timeout fail the slow case instead of hanging.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			_, err := a.Do(ctx, inv("action-42", 5), alert.Alert{})
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
			} else {
				he, ok := errors.AsType[*handlers.Error](err)
				if !ok || he.Reason != tt.wantReason {
					t.Fatalf("Do error = %#v (%v), want a *handlers.Error with reason %q", err, err, tt.wantReason)
				}
			}
			reqs := p.waitRequests(t, tt.wantTries)
			if len(reqs) != tt.wantTries {
				t.Fatalf("pager saw %d requests, want %d", len(reqs), tt.wantTries)
			}
			for i, r := range reqs {
				if k := r.header.Get("Idempotency-Key"); k != "action-42" {
					t.Errorf("attempt %d: Idempotency-Key = %q, want action-42", i+1, k)
				}
				if !bytes.Equal(r.body, reqs[0].body) {
					t.Errorf("attempt %d sent %s, attempt 1 sent %s", i+1, r.body, reqs[0].body)
				}
				if k := decode(t, r.body)["dedup_key"]; k != "responder-incident-5" {
					t.Errorf("attempt %d: dedup_key = %v, want responder-incident-5", i+1, k)
				}
			}
			// One backoff per retry, each within the jitter of a doubling from 100ms.
			if len(*waits) != tt.wantTries-1 {
				t.Errorf("waited %v, want %d waits", *waits, tt.wantTries-1)
			}
			base := 100 * time.Millisecond
			for i, w := range *waits {
				if w < base*8/10 || w > base*12/10 {
					t.Errorf("wait %d = %s, want %s ± 20%%", i+1, w, base)
				}
				base *= 2
			}
		})
	}
}

func TestDoConnectionRefused(t *testing.T) {
	p := newPager(t, step{code: 202})
	h, waits := newHandler(t, p, Options{Retries: 1})
	p.srv.Close()
	_, err := mustBuild(t, h, handlers.Params{"summary": "x"}).Do(t.Context(), inv("1", 1), alert.Alert{})
	if he, ok := errors.AsType[*handlers.Error](err); !ok || he.Reason != vocab.ReasonServerError {
		t.Fatalf("Do = %v, want a server_error *handlers.Error", err)
	}
	if strings.Contains(err.Error(), "/v2/enqueue") {
		t.Errorf("error %q quotes the URL", err)
	}
	if len(*waits) != 1 {
		t.Errorf("waited %v, want one retry", *waits)
	}
}

func TestDoNoRetryPastDeadline(t *testing.T) {
	p := newPager(t, step{code: 500})
	h, waits := newHandler(t, p, Options{Backoff: time.Hour})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err := mustBuild(t, h, handlers.Params{"summary": "x"}).Do(ctx, inv("1", 1), alert.Alert{})
	if he, ok := errors.AsType[*handlers.Error](err); !ok || he.Reason != vocab.ReasonServerError {
		t.Fatalf("Do = %v, want a server_error *handlers.Error", err)
	}
	if n := len(p.requests()); n != 1 || len(*waits) != 0 {
		t.Errorf("pager saw %d requests after waits %v, want 1 request and no wait", n, *waits)
	}
}

func TestDoCancelledDuringBackoff(t *testing.T) {
	p := newPager(t, step{code: 503})
	h, _ := newHandler(t, p, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	h.sleep = func(ctx context.Context, d time.Duration) error { cancel(); return clock.Sleep(ctx, d) }
	_, err := mustBuild(t, h, handlers.Params{"summary": "x"}).Do(ctx, inv("1", 1), alert.Alert{})
	if _, ok := errors.AsType[*handlers.Error](err); !ok || !errors.Is(err, context.Canceled) {
		t.Fatalf("Do = %v, want a *handlers.Error wrapping context.Canceled", err)
	}
}

func TestRoutingKeyNeverLeaks(t *testing.T) {
	tests := []struct {
		name   string
		script []step
	}{
		{name: "echoed on success", script: []step{{code: 202, echo: true}}},
		{name: "echoed on 500 then 400", script: []step{{code: 500, echo: true}, {code: 400, echo: true}}},
		// The key straddles the 256 bytes kept of a response: no prefix of it may survive the cut.
		{name: "echo cut inside the key", script: []step{{code: 400, echo: true, pad: 256 - len(`{"routing_key":"`) - 10}}},
		{name: "retries run out", script: []step{{code: 503, echo: true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPager(t, tt.script...)
			var logs bytes.Buffer
			h, _ := newHandler(t, p, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			a := mustBuild(t, h, handlers.Params{"summary": "x", "dedup_key": "db-1"})
			res, err := a.Do(t.Context(), inv("1", 1), alert.Alert{})
			var errText string
			if err != nil {
				errText = err.Error()
			}
			if len(p.requests()) == 0 || !strings.Contains(string(p.requests()[0].body), routingKey) {
				t.Fatal("the pager did not receive the routing key")
			}
			if logs.Len() == 0 {
				t.Fatal("no log lines to check")
			}
			for what, s := range map[string]string{"logs": logs.String(), "result": res.Detail, "error": errText,
				"target": a.Target(), "scope": a.Scope(), "spec": h.Spec().Doc + h.Spec().Example} {
				if strings.Contains(s, routingKey[:8]) {
					t.Errorf("%s contain (a prefix of) the routing key: %s", what, s)
				}
			}
		})
	}
}

func TestUnconfigured(t *testing.T) {
	tests := []struct {
		name    string
		o       Options
		wantErr string
	}{
		{"no url", Options{RoutingKey: routingKey}, "handlers.page.webhook is not configured"},
		{"no routing key", Options{URL: "https://events.pagerduty.com/v2/enqueue"}, "handlers.page.webhook is not configured"},
		{"nothing", Options{}, "handlers.page.webhook is not configured"},
		{"bad scheme", Options{URL: "ftp://events.example.com/", RoutingKey: routingKey}, `scheme "ftp"`},
		{"no host", Options{URL: "https:///v2/enqueue?token=querysecret", RoutingKey: routingKey}, "no host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := New(tt.o)
			if err := h.ConfigError(); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ConfigError = %v, want %q", err, tt.wantErr)
			}
			_, err := h.Build(handlers.Params{"summary": "x"})
			if err == nil || handlers.ReasonOf(err) != vocab.ReasonBadParam || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build = %v (reason %q), want bad_param containing %q", err, handlers.ReasonOf(err), tt.wantErr)
			}
			if strings.Contains(err.Error(), "querysecret") || strings.Contains(err.Error(), routingKey) {
				t.Errorf("Build error leaks a secret: %v", err)
			}
			reg, err := handlers.NewRegistry(h)
			if err != nil {
				t.Fatal(err)
			}
			if err := reg.CheckAction(Name, "", map[string]any{"summary": "{{ alert.name }}"}); err != nil {
				t.Errorf("CheckAction on an unconfigured handler: %v", err)
			}
		})
	}
}

func TestCheckAction(t *testing.T) {
	reg, err := handlers.NewRegistry(New(Options{URL: "https://events.pagerduty.com/v2/enqueue", RoutingKey: routingKey}))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		approval string
		raw      map[string]any
		wantErr  string // "" = accepted
	}{
		{"templated summary", "", map[string]any{"summary": "{{ alert.labels.pod }} is crash looping"}, ""},
		{"everything", "none", map[string]any{
			"summary": "{{ alert.labels.pod }} is crash looping", "severity": "{{ alert.labels.severity }}", "source": "kube",
			"event_action": "resolve", "dedup_key": "pod-{{ alert.labels.pod }}",
			"details": map[string]any{"ns": "{{ alert.labels.namespace }}"}, "links": []any{"https://runbooks.example.com/x", "{{ alert.annotations.dashboard }}"},
		}, ""},
		{"templated event_action", "", map[string]any{"summary": "x", "event_action": "{{ x }}"}, "may not be templated"},
		{"unknown event_action", "", map[string]any{"summary": "x", "event_action": "acknowledge"}, "event_action"},
		{"unknown severity", "", map[string]any{"summary": "x", "severity": "sev1"}, `severity "sev1"`},
		{"missing summary", "", map[string]any{"severity": "info"}, `needs param "summary"`},
		{"unknown param", "", map[string]any{"summary": "x", "urgency": "high"}, `no param "urgency"`},
		{"details not strings", "", map[string]any{"summary": "x", "details": map[string]any{"n": 1}}, "must be a string"},
		{"bad link", "", map[string]any{"summary": "x", "links": []any{"javascript:alert(1)"}}, "not an absolute http(s) URL"},
		{"dedup key too long", "", map[string]any{"summary": "x", "dedup_key": strings.Repeat("k", 256)}, "more than 255"},
		{"empty source", "", map[string]any{"summary": "x", "source": " "}, "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := reg.CheckAction(Name, tt.approval, tt.raw)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("CheckAction: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("CheckAction = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	h := New(Options{URL: "HTTPS://Events.PagerDuty.com:443/v2/enqueue", RoutingKey: routingKey})
	long := strings.Repeat("é", 2000)
	tests := []struct {
		name        string
		params      handlers.Params
		wantTarget  string
		wantSummary string
		wantErr     string // "" = ok; errors must be bad_param
	}{
		{name: "defaults", params: handlers.Params{"summary": "x"}, wantTarget: "page:incident", wantSummary: "x"},
		{name: "summary cut to 1024 characters", params: handlers.Params{"summary": long},
			wantTarget: "page:incident", wantSummary: strings.Repeat("é", 1023) + "…"},
		{name: "summary of exactly 1024 kept", params: handlers.Params{"summary": long[:2048]},
			wantTarget: "page:incident", wantSummary: long[:2048]},
		{name: "dedup key target", params: handlers.Params{"summary": "x", "dedup_key": "db-1"}, wantTarget: "page:db-1", wantSummary: "x"},
		{name: "empty summary rendered", params: handlers.Params{"summary": " "}, wantErr: "summary"},
		{name: "empty summary on resolve is fine", params: handlers.Params{"summary": "", "event_action": "resolve"},
			wantTarget: "page:incident"},
		{name: "rendered bad severity", params: handlers.Params{"summary": "x", "severity": "page"}, wantErr: "severity"},
		{name: "rendered long dedup key", params: handlers.Params{"summary": "x", "dedup_key": strings.Repeat("k", 300)}, wantErr: "255"},
		{name: "rendered empty dedup key", params: handlers.Params{"summary": "x", "dedup_key": ""}, wantErr: "dedup_key"},
		{name: "rendered bad link", params: handlers.Params{"summary": "x", "links": []any{"/relative"}}, wantErr: "link"},
		{name: "missing summary", params: handlers.Params{"severity": "info"}, wantErr: `needs param "summary"`},
		{name: "summary not a string", params: handlers.Params{"summary": 3}, wantErr: "must be a string"},
		{name: "unknown param", params: handlers.Params{"summary": "x", "to": "me"}, wantErr: `no param "to"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := h.Build(tt.params)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || handlers.ReasonOf(err) != vocab.ReasonBadParam {
					t.Fatalf("Build = %v (reason %q), want bad_param containing %q", err, handlers.ReasonOf(err), tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			pa := a.(*Action)
			got := []string{a.Target(), a.Scope(), string(pa.Class()), pa.summary}
			want := []string{tt.wantTarget, "events.pagerduty.com", string(vocab.ClassNotify), tt.wantSummary}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("target, scope, class, summary (-want +got):\n%s", diff)
			}
			if n := utf8.RuneCountInString(pa.summary); n > maxSummary {
				t.Errorf("summary has %d characters", n)
			}
			if err := a.Check(t.Context(), alert.Alert{}); !errors.Is(err, handlers.ErrNotCheckable) {
				t.Errorf("Check = %v, want ErrNotCheckable", err)
			}
		})
	}
}

func TestSpec(t *testing.T) {
	h := New(Options{URL: "https://events.pagerduty.com/v2/enqueue", RoutingKey: routingKey})
	s := h.Spec()
	if s.Name != "page.webhook" || s.Class != vocab.ClassNotify || s.DefaultApproval != handlers.ApprovalNone {
		t.Errorf("Spec = %q %q %q, want page.webhook notify none", s.Name, s.Class, s.DefaultApproval)
	}
	if floor := 3 * DefaultTimeout; s.DefaultTimeout < floor {
		t.Errorf("DefaultTimeout = %s, shorter than three attempts (%s)", s.DefaultTimeout, floor)
	}
	if p, ok := s.Param("event_action"); !ok || !p.Static {
		t.Errorf("event_action = %+v, want a static param", p)
	}
	// The example must be a rule file whose page.webhook actions load.
	var doc struct {
		Rules []struct {
			Actions []struct {
				Handler string
				Params  map[string]any
			} `yaml:"actions"`
			OnResolved []struct {
				Handler string
				Params  map[string]any
			} `yaml:"on_resolved"`
		} `yaml:"rules"`
	}
	if err := yaml.Unmarshal([]byte(s.Example), &doc); err != nil {
		t.Fatalf("example: %v", err)
	}
	reg, _ := handlers.NewRegistry(h)
	n := 0
	for _, r := range doc.Rules {
		for _, a := range append(r.Actions, r.OnResolved...) {
			n++
			if err := reg.CheckAction(a.Handler, "", a.Params); err != nil {
				t.Errorf("example action: %v", err)
			}
		}
	}
	if n != 1 {
		t.Errorf("example has %d actions, want 1 (the engine sends the resolve event itself)", n)
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"  {\"status\": \"success\"}\n", `{"status": "success"}`},
		{"a\r\n\tb\x00c", "a b c"},
		{"bad \xff utf8 \u202e", "bad ? utf8 ?"},
		{strings.Repeat("x", 300), strings.Repeat("x", 256)},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := handlers.Excerpt([]byte(tt.in), delivery.MaxExcerpt); got != tt.want {
				t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzBody feeds rendered params (alert data ends up in them): Build either refuses with bad_param
// or yields an event that is valid JSON within PagerDuty's limits and names only declared links.
func FuzzBody(f *testing.F) {
	for _, s := range [][3]string{
		{"db-1 is down", "", "https://runbooks.example.com/x"},
		{strings.Repeat("é", 1100), "k", "http://a"},
		{"\xff\xfe\u202e", "\x00", "javascript:alert(1)"},
		{`"},"routing_key":"x`, `"}`, "https://a/\"}"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	h := New(Options{URL: "https://events.pagerduty.com/v2/enqueue", RoutingKey: routingKey})
	f.Fuzz(func(t *testing.T, summary, dedupKey, link string) {
		a, err := h.Build(handlers.Params{"summary": summary, "dedup_key": dedupKey, "links": []any{link}})
		if err != nil {
			if handlers.ReasonOf(err) != vocab.ReasonBadParam {
				t.Fatalf("Build error %v has reason %q", err, handlers.ReasonOf(err))
			}
			return
		}
		b, err := a.(*Action).body(dedupKey)
		if err != nil {
			t.Fatalf("body: %v", err)
		}
		var ev event
		if err := json.Unmarshal(b, &ev); err != nil {
			t.Fatalf("body %q: %v", b, err)
		}
		if ev.RoutingKey != routingKey || ev.Payload == nil || utf8.RuneCountInString(ev.Payload.Summary) > maxSummary ||
			utf8.RuneCountInString(ev.DedupKey) > maxDedupKey || len(ev.Links) != 1 {
			t.Fatalf("body %s breaks the event's limits", b)
		}
	})
}

package httpreq

import (
	"bytes"
	stdcmp "cmp"
	"context"
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
	"unicode"
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

// step is how the downstream answers one request.
type step struct {
	code   int
	header map[string]string
	body   string
	block  bool // hold the request until the client gives up
}

type recorded struct {
	method, path, query, body string
	header                    http.Header
}

// downstream is a real HTTP server answering from a script (the last step repeats).
type downstream struct {
	srv     *httptest.Server
	mu      sync.Mutex
	reqs    []recorded
	script  []step
	release chan struct{}
}

func newDownstream(t *testing.T, script ...step) *downstream {
	t.Helper()
	d := &downstream{script: script, release: make(chan struct{})}
	d.srv = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.srv.Close)
	t.Cleanup(func() { close(d.release) }) // runs before Close: unblocks held requests
	return d
}

func (d *downstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d.mu.Lock()
	n := len(d.reqs)
	d.reqs = append(d.reqs, recorded{method: r.Method, path: r.URL.Path, query: r.URL.RawQuery, body: string(body), header: r.Header.Clone()})
	s := d.script[min(n, len(d.script)-1)]
	d.mu.Unlock()
	if s.block {
		select {
		case <-r.Context().Done():
		case <-d.release:
		}
		return
	}
	for k, v := range s.header {
		w.Header().Set(k, v)
	}
	w.WriteHeader(s.code)
	_, _ = io.WriteString(w, s.body)
}

func (d *downstream) requests() []recorded {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]recorded(nil), d.reqs...)
}

// waitRequests polls until the server has seen n requests (a server may log an abandoned request
// just after the client returned).
func (d *downstream) waitRequests(t *testing.T, n int) []recorded {
	t.Helper()
	testwait.Until(t, 5*time.Second, fmt.Sprintf("%d requests at the server", n), func() bool { return len(d.requests()) >= n })
	return d.requests()
}

func (d *downstream) host() string { return strings.TrimPrefix(d.srv.URL, "http://") }

func testOptions(hosts ...string) Options {
	return Options{AllowedHosts: hosts, Timeout: 5 * time.Second, Backoff: time.Millisecond, Version: "test"}
}

func mustBuild(t *testing.T, h *Handler, p handlers.Params) *Action {
	t.Helper()
	a, err := h.Build(p)
	if err != nil {
		t.Fatalf("Build(%v): %v", p, err)
	}
	return a.(*Action)
}

// keyInv is an invocation carrying only an idempotency key.
func keyInv(key string) handlers.Invocation {
	return handlers.Invocation{IdempotencyKey: key}
}

func TestDoStatusSequences(t *testing.T) {
	tests := []struct {
		name       string
		script     []step
		timeout    time.Duration
		retries    int
		wantReason vocab.Reason // "" = success
		wantTries  int
		wantDetail string
	}{
		{name: "200", script: []step{{code: 200, body: `{"dag_run_id": "manual__1"}`}},
			wantTries: 1, wantDetail: `200 OK: {"dag_run_id": "manual__1"}`},
		{name: "204 no body", script: []step{{code: 204}}, wantTries: 1, wantDetail: "204 No Content"},
		{name: "500 500 200", script: []step{{code: 500}, {code: 500}, {code: 200, body: "ok"}},
			wantTries: 3, wantDetail: "200 OK: ok"},
		{name: "500 x3", script: []step{{code: 500, body: "boom"}}, wantReason: vocab.ReasonServerError, wantTries: 3},
		{name: "503 then 400", script: []step{{code: 503}, {code: 400}}, wantReason: vocab.ReasonClientError, wantTries: 2},
		{name: "404", script: []step{{code: 404}}, wantReason: vocab.ReasonClientError, wantTries: 1},
		{name: "409", script: []step{{code: 409}}, wantReason: vocab.ReasonClientError, wantTries: 1},
		{name: "429 then 200", script: []step{{code: 429}, {code: 200}}, wantTries: 2, wantDetail: "200 OK"},
		{name: "429 x3", script: []step{{code: 429, header: map[string]string{"Retry-After": "0"}}},
			wantReason: vocab.ReasonClientError, wantTries: 3},
		{name: "304 is not success", script: []step{{code: 304}}, wantReason: vocab.ReasonClientError, wantTries: 1},
		{name: "no retries", script: []step{{code: 502}}, retries: -1, wantReason: vocab.ReasonServerError, wantTries: 1},
		{name: "slow server", script: []step{{block: true}}, timeout: 100 * time.Millisecond, retries: 1,
			wantReason: vocab.ReasonTimeout, wantTries: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDownstream(t, tt.script...)
			o := testOptions(d.host())
			o.Timeout = stdcmp.Or(tt.timeout, o.Timeout)
			o.Retries = tt.retries
			a := mustBuild(t, New(o), handlers.Params{"url": d.srv.URL + "/api/v1/dags/x/dagRuns"})
			// The deadline makes a broken per-attempt timeout fail the slow case instead of hanging.
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			res, err := a.Do(ctx, keyInv("action-42"), alert.Alert{})
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				if res.Detail != tt.wantDetail {
					t.Errorf("Detail = %q, want %q", res.Detail, tt.wantDetail)
				}
				// The status of the answer that succeeded, for later steps (steps.<id>.result.status).
				if want := tt.script[len(tt.script)-1].code; res.Fields["status"] != want {
					t.Errorf("Fields = %v, want status %d", res.Fields, want)
				}
			} else if got := handlers.ReasonOf(err); got != tt.wantReason {
				t.Fatalf("reason = %q (err %v), want %q", got, err, tt.wantReason)
			}
			reqs := d.waitRequests(t, tt.wantTries)
			if len(reqs) != tt.wantTries {
				t.Fatalf("server saw %d requests, want %d", len(reqs), tt.wantTries)
			}
			for i, r := range reqs {
				if k := r.header.Get("Idempotency-Key"); k != "action-42" {
					t.Errorf("attempt %d: Idempotency-Key = %q, want action-42", i+1, k)
				}
			}
		})
	}
}

func TestDoConnectionRefused(t *testing.T) {
	d := newDownstream(t, step{code: 200})
	url := d.srv.URL + "/x"
	o := testOptions(d.host())
	d.srv.Close()
	_, err := mustBuild(t, New(o), handlers.Params{"url": url}).Do(t.Context(), handlers.Invocation{}, alert.Alert{})
	if got := handlers.ReasonOf(err); got != vocab.ReasonServerError {
		t.Fatalf("reason = %q (err %v), want server_error", got, err)
	}
}

func TestDoSends(t *testing.T) {
	tests := []struct {
		name   string
		params handlers.Params
		key    string
		want   recorded // header holds only the headers checked
		absent []string // headers that must not be sent
	}{
		{name: "json body defaults",
			params: handlers.Params{"url": "/api/v1/dags/billing_ingest/dagRuns", "body": `{"conf": {"reason": "X"}}`},
			key:    "7",
			want: recorded{method: "POST", path: "/api/v1/dags/billing_ingest/dagRuns", body: `{"conf": {"reason": "X"}}`,
				header: http.Header{"Content-Type": {"application/json"}, "User-Agent": {"responder/test"}, "Idempotency-Key": {"7"}}}},
		{name: "method headers and query",
			params: handlers.Params{"url": "/status?component=db&x=1", "method": "put", "body": `[1]`,
				"headers": map[string]any{"content-type": "text/plain", "X-Api-Key": "s3cret", "User-Agent": "mine"}},
			key: "8",
			want: recorded{method: "PUT", path: "/status", query: "component=db&x=1", body: `[1]`,
				header: http.Header{"Content-Type": {"text/plain"}, "X-Api-Key": {"s3cret"}, "User-Agent": {"mine"}, "Idempotency-Key": {"8"}}}},
		{name: "get without body or key",
			params: handlers.Params{"url": "/health", "method": "GET"},
			want:   recorded{method: "GET", path: "/health", header: http.Header{}},
			absent: []string{"Content-Type", "Idempotency-Key"}},
		{name: "non-json body",
			params: handlers.Params{"url": "/x", "body": "{not json"},
			want:   recorded{method: "POST", path: "/x", body: "{not json", header: http.Header{}},
			absent: []string{"Content-Type"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDownstream(t, step{code: 200})
			tt.params["url"] = d.srv.URL + tt.params["url"].(string)
			a := mustBuild(t, New(testOptions(d.host())), tt.params)
			if _, err := a.Do(t.Context(), keyInv(tt.key), alert.Alert{}); err != nil {
				t.Fatalf("Do: %v", err)
			}
			reqs := d.requests()
			if len(reqs) != 1 {
				t.Fatalf("server saw %d requests, want 1", len(reqs))
			}
			got := reqs[0]
			for k := range tt.want.header {
				if got.header.Get(k) != tt.want.header.Get(k) {
					t.Errorf("header %s = %q, want %q", k, got.header.Get(k), tt.want.header.Get(k))
				}
			}
			for _, k := range tt.absent {
				if v, ok := got.header[k]; ok {
					t.Errorf("header %s = %q, want none", k, v)
				}
			}
			got.header, tt.want.header = nil, nil
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(recorded{})); diff != "" {
				t.Errorf("request (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDoNeverLogsHeaderValuesOrBody(t *testing.T) {
	d := newDownstream(t, step{code: 500}, step{code: 200})
	var buf bytes.Buffer
	o := testOptions(d.host())
	o.Logger = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := mustBuild(t, New(o), handlers.Params{
		"url":     d.srv.URL + "/x?token=querysecret",
		"headers": map[string]any{"Authorization": "Bearer headersecret"},
		"body":    `{"password": "bodysecret"}`,
	})
	if _, err := a.Do(t.Context(), keyInv("1"), alert.Alert{}); err != nil {
		t.Fatalf("Do: %v", err)
	}
	logs := buf.String()
	if !strings.Contains(logs, "retrying") || !strings.Contains(logs, "attempt=2") {
		t.Errorf("logs lack the retry and the second attempt:\n%s", logs)
	}
	for _, secret := range []string{"headersecret", "bodysecret", "querysecret"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
}

func TestDoRetryAfter(t *testing.T) {
	tests := []struct {
		name       string
		retryAfter string
		wantWaits  []time.Duration
		wantReason vocab.Reason
		wantTries  int
	}{
		{name: "seconds honoured", retryAfter: "7", wantWaits: []time.Duration{7 * time.Second}, wantTries: 2},
		{name: "beyond the cap: fail now", retryAfter: "3600", wantReason: vocab.ReasonClientError, wantTries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := newDownstream(t, step{code: 429, header: map[string]string{"Retry-After": tt.retryAfter}}, step{code: 200})
			h := New(testOptions(d.host()))
			var waits []time.Duration
			h.sleep = func(_ context.Context, d time.Duration) error { waits = append(waits, d); return nil }
			_, err := mustBuild(t, h, handlers.Params{"url": d.srv.URL}).Do(t.Context(), handlers.Invocation{}, alert.Alert{})
			if tt.wantReason == "" && err != nil {
				t.Fatalf("Do: %v", err)
			}
			if tt.wantReason != "" && handlers.ReasonOf(err) != tt.wantReason {
				t.Fatalf("reason = %q (err %v), want %q", handlers.ReasonOf(err), err, tt.wantReason)
			}
			if diff := cmp.Diff(tt.wantWaits, waits); diff != "" {
				t.Errorf("waits (-want +got):\n%s", diff)
			}
			if n := len(d.requests()); n != tt.wantTries {
				t.Errorf("server saw %d requests, want %d", n, tt.wantTries)
			}
		})
	}
}

func TestDoNoRetryPastDeadline(t *testing.T) {
	d := newDownstream(t, step{code: 500})
	o := testOptions(d.host())
	o.Backoff = time.Hour
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	start := time.Now()
	_, err := mustBuild(t, New(o), handlers.Params{"url": d.srv.URL}).Do(ctx, handlers.Invocation{}, alert.Alert{})
	if handlers.ReasonOf(err) != vocab.ReasonServerError {
		t.Fatalf("reason = %q (err %v), want server_error", handlers.ReasonOf(err), err)
	}
	if n := len(d.requests()); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Errorf("Do waited %s for a retry that could not finish before the deadline", el)
	}
}

func TestDoCancelledDuringBackoff(t *testing.T) {
	d := newDownstream(t, step{code: 500})
	o := testOptions(d.host())
	o.Backoff = time.Hour
	h := New(o)
	ctx, cancel := context.WithCancel(t.Context())
	h.sleep = func(ctx context.Context, d time.Duration) error { cancel(); return clock.Sleep(ctx, d) }
	_, err := mustBuild(t, h, handlers.Params{"url": d.srv.URL}).Do(ctx, handlers.Invocation{}, alert.Alert{})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled in the chain", err)
	}
}

func TestRedirects(t *testing.T) {
	t.Run("to a disallowed host is refused", func(t *testing.T) {
		other := newDownstream(t, step{code: 200})
		d := newDownstream(t, step{code: 307, header: map[string]string{"Location": other.srv.URL + "/steal"}})
		_, err := mustBuild(t, New(testOptions(d.host())), handlers.Params{"url": d.srv.URL + "/x"}).Do(t.Context(), keyInv("1"), alert.Alert{})
		if handlers.ReasonOf(err) != vocab.ReasonClientError || !errors.Is(err, errRedirect) {
			t.Fatalf("err = %v (reason %q), want a refused redirect with client_error", err, handlers.ReasonOf(err))
		}
		if n := len(other.requests()); n != 0 {
			t.Errorf("disallowed host got %d requests", n)
		}
		if n := len(d.requests()); n != 1 {
			t.Errorf("origin got %d requests, want 1 (not retried)", n)
		}
	})
	t.Run("to an allowed host is followed", func(t *testing.T) {
		other := newDownstream(t, step{code: 201})
		d := newDownstream(t, step{code: 308, header: map[string]string{"Location": other.srv.URL + "/there"}})
		res, err := mustBuild(t, New(testOptions(d.host(), other.host())), handlers.Params{"url": d.srv.URL, "body": `{"a":1}`}).
			Do(t.Context(), keyInv("k"), alert.Alert{})
		if err != nil || res.Detail != "201 Created" {
			t.Fatalf("Do = %q, %v; want 201 Created", res.Detail, err)
		}
		reqs := other.requests()
		if len(reqs) != 1 || reqs[0].header.Get("Idempotency-Key") != "k" || reqs[0].body != `{"a":1}` {
			t.Errorf("redirect target got %+v, want one POST with the key and body", reqs)
		}
	})
}

func TestValidateStatic(t *testing.T) {
	h := New(testOptions("airflow.internal:8080", "Status.Example.com"))
	const base = "http://airflow.internal:8080"
	tests := []struct {
		name    string
		raw     handlers.Params
		wantErr string // "" = valid
	}{
		{"literal url", handlers.Params{"url": base + "/api/v1/dags/billing_ingest/dagRuns"}, ""},
		{"templated path", handlers.Params{"url": base + "/api/v1/dags/{{ alert.labels.dag }}/dagRuns"}, ""},
		{"templated query", handlers.Params{"url": base + "/x?reason={{ alert.name }}"}, ""},
		{"case-insensitive host and scheme", handlers.Params{"url": "HTTP://AIRFLOW.Internal:8080/x"}, ""},
		{"allowed host, default port spelled out", handlers.Params{"url": "https://status.example.com:443/x"}, ""},
		{"allowed host, no path", handlers.Params{"url": "https://status.example.com"}, ""},
		{"templated host", handlers.Params{"url": "http://{{ alert.labels.host }}/x"}, "may not be templated"},
		{"templated host suffix", handlers.Params{"url": "http://airflow.{{ alert.labels.env }}/x"}, "may not be templated"},
		{"templated port", handlers.Params{"url": "http://airflow.internal:{{ alert.labels.port }}/x"}, "may not be templated"},
		{"templated after host without slash", handlers.Params{"url": base + "{{ alert.labels.path }}"}, "may not be templated"},
		{"whole url templated", handlers.Params{"url": "{{ alert.annotations.url }}"}, "may not be templated"},
		{"templated scheme", handlers.Params{"url": "{{ alert.labels.scheme }}://airflow.internal:8080/"}, "may not be templated"},
		{"host not allowed", handlers.Params{"url": "http://evil.example.com/x"}, "not in handlers.http.allowed_hosts"},
		{"templated url, host not allowed", handlers.Params{"url": "http://evil.example.com/{{ alert.name }}"}, "not in handlers.http.allowed_hosts"},
		{"allowed host, other port", handlers.Params{"url": "http://airflow.internal:9090/x"}, "not in handlers.http.allowed_hosts"},
		{"allowed host:port, no port", handlers.Params{"url": "http://airflow.internal/x"}, "not in handlers.http.allowed_hosts"},
		{"bad scheme", handlers.Params{"url": "ftp://airflow.internal:8080/x"}, `scheme "ftp"`},
		{"file scheme", handlers.Params{"url": "file:///etc/passwd"}, `scheme "file"`},
		{"no scheme", handlers.Params{"url": "airflow.internal:8080/x"}, "scheme"},
		{"userinfo", handlers.Params{"url": "http://admin:pw@airflow.internal:8080/x"}, "userinfo"},
		{"userinfo, templated path", handlers.Params{"url": "http://admin@airflow.internal:8080/{{ alert.name }}"}, "userinfo"},
		{"dot-dot literal", handlers.Params{"url": base + "/api/../admin"}, ".. segment"},
		{"method literal lower-case", handlers.Params{"url": base, "method": "put"}, ""},
		{"method templated", handlers.Params{"url": base, "method": "{{ alert.labels.verb }}"}, ""},
		{"bad method", handlers.Params{"url": base, "method": "CONNECT"}, "method"},
		{"bad method token", handlers.Params{"url": base, "method": "PO ST"}, "method"},
		{"class notify", handlers.Params{"url": base, "class": "notify"}, ""},
		{"bad class", handlers.Params{"url": base, "class": "loud"}, "class"},
		{"headers ok", handlers.Params{"url": base, "headers": map[string]any{"Authorization": "Bearer {{ alert.annotations.t }}", "X-A": "b"}}, ""},
		{"idempotency key override", handlers.Params{"url": base, "headers": map[string]any{"idempotency-key": "x"}}, "may not be overridden"},
		{"host header", handlers.Params{"url": base, "headers": map[string]any{"Host": "evil.example.com"}}, "may not be overridden"},
		{"bad header name", handlers.Params{"url": base, "headers": map[string]any{"X Bad": "x"}}, "not a valid HTTP token"},
		{"header value with newline", handlers.Params{"url": base, "headers": map[string]any{"X-A": "a\r\nX-B: b"}}, "line break"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := h.ValidateStatic(tt.raw)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ValidateStatic: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("ValidateStatic = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestBuild(t *testing.T) {
	h := New(testOptions("airflow.internal:8080", "status.example.com"))
	tests := []struct {
		name       string
		params     handlers.Params
		wantTarget string
		wantScope  string
		wantClass  vocab.Class
		wantErr    string // "" = ok; errors must be bad_param
	}{
		{name: "rendered example", params: handlers.Params{
			"url": "http://airflow.internal:8080/api/v1/dags/billing_ingest/dagRuns", "body": `{"conf":{"reason":"BillingIngestStale"}}`},
			wantTarget: "POST airflow.internal:8080/api/v1/dags/billing_ingest/dagRuns", wantScope: "airflow.internal:8080", wantClass: vocab.ClassDisruptive},
		{name: "canonical form", params: handlers.Params{"url": "HTTP://Airflow.INTERNAL:8080/A/b?x=1#frag", "method": "delete", "class": "notify"},
			wantTarget: "DELETE airflow.internal:8080/A/b", wantScope: "airflow.internal:8080", wantClass: vocab.ClassNotify},
		{name: "default port dropped", params: handlers.Params{"url": "https://status.example.com:443"},
			wantTarget: "POST status.example.com/", wantScope: "status.example.com", wantClass: vocab.ClassDisruptive},
		{name: "escaped path kept", params: handlers.Params{"url": "https://status.example.com/a%20b/c"},
			wantTarget: "POST status.example.com/a%20b/c", wantScope: "status.example.com", wantClass: vocab.ClassDisruptive},
		{name: "rendered dot-dot", params: handlers.Params{"url": "http://airflow.internal:8080/api/v1/dags/../../admin"}, wantErr: ".."},
		{name: "rendered encoded dot-dot", params: handlers.Params{"url": "http://airflow.internal:8080/api/%2e%2e/admin"}, wantErr: ".."},
		{name: "rendered backslash dot-dot", params: handlers.Params{"url": `http://airflow.internal:8080/api/..\admin`}, wantErr: ".."},
		{name: "rendered host changed", params: handlers.Params{"url": "http://evil.example.com/api"}, wantErr: "allowed_hosts"},
		{name: "rendered userinfo", params: handlers.Params{"url": "http://x@airflow.internal:8080/api"}, wantErr: "userinfo"},
		{name: "missing url", params: handlers.Params{"body": "x"}, wantErr: `needs param "url"`},
		{name: "url not a string", params: handlers.Params{"url": 3}, wantErr: "must be a string"},
		{name: "unknown param", params: handlers.Params{"url": "https://status.example.com", "verb": "GET"}, wantErr: `no param "verb"`},
		{name: "header not a string", params: handlers.Params{"url": "https://status.example.com", "headers": map[string]any{"X": 1}}, wantErr: "must be a string"},
		{name: "rendered header newline", params: handlers.Params{"url": "https://status.example.com", "headers": map[string]any{"X": "a\nb"}}, wantErr: "line break"},
		{name: "rendered bad method", params: handlers.Params{"url": "https://status.example.com", "method": "TRACE"}, wantErr: "method"},
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
			got := []string{a.Target(), a.Scope(), string(a.(*Action).Class())}
			want := []string{tt.wantTarget, tt.wantScope, string(tt.wantClass)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("target, scope, class (-want +got):\n%s", diff)
			}
			if err := a.Check(t.Context(), alert.Alert{}); !errors.Is(err, handlers.ErrNotCheckable) {
				t.Errorf("Check = %v, want ErrNotCheckable", err)
			}
		})
	}
}

// TestRegistryAcceptsIssueExample checks the rule of issue 2 §9 through the registry, as rule
// loading does.
func TestRegistryAcceptsIssueExample(t *testing.T) {
	reg, err := handlers.NewRegistry(New(Options{AllowedHosts: []string{"airflow.internal:8080"}}))
	if err != nil {
		t.Fatal(err)
	}
	raw := map[string]any{
		"url":  "http://airflow.internal:8080/api/v1/dags/billing_ingest/dagRuns",
		"body": "{{ toJSON({conf: {reason: alert.name}}) }}",
	}
	if err := reg.CheckAction(Name, "", raw); err != nil {
		t.Fatalf("CheckAction: %v", err)
	}
	raw["class"] = "{{ alert.labels.class }}"
	if err := reg.CheckAction(Name, "", raw); err == nil {
		t.Error("CheckAction accepted a templated class")
	}
	delete(raw, "class")
	raw["url"] = "http://{{ alert.labels.host }}/api"
	if err := reg.CheckAction(Name, "none", raw); err == nil {
		t.Error("CheckAction accepted a templated host")
	}
}

func TestSpec(t *testing.T) {
	h := New(Options{AllowedHosts: []string{"airflow.internal:8080"}})
	s := h.Spec()
	if s.Name != "http.request" || s.Class != vocab.ClassDisruptive || s.DefaultApproval != handlers.ApprovalNone {
		t.Errorf("Spec = %q %q %q, want http.request disruptive none", s.Name, s.Class, s.DefaultApproval)
	}
	if floor := 3 * DefaultTimeout; s.DefaultTimeout < floor {
		t.Errorf("DefaultTimeout = %s, shorter than three attempts (%s)", s.DefaultTimeout, floor)
	}
	// The example must be a rule file whose http.request actions load.
	var doc struct {
		Rules []struct {
			Actions []struct {
				Handler string         `yaml:"handler"`
				Params  map[string]any `yaml:"params"`
			} `yaml:"actions"`
		} `yaml:"rules"`
	}
	if err := yaml.Unmarshal([]byte(s.Example), &doc); err != nil {
		t.Fatalf("example: %v", err)
	}
	reg, _ := handlers.NewRegistry(h)
	n := 0
	for _, r := range doc.Rules {
		for _, a := range r.Actions {
			n++
			if err := reg.CheckAction(a.Handler, "", a.Params); err != nil {
				t.Errorf("example action: %v", err)
			}
		}
	}
	if n == 0 {
		t.Error("example has no actions")
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"0", 0, true},
		{" 12 ", 12 * time.Second, true},
		{"-1", 0, false},
		{"99999999999999", 24 * time.Hour, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"soon", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := delivery.ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("parseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestSanitize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"  {\"ok\": true}\n", `{"ok": true}`},
		{"a\r\n\tb\x00c", "a b c"},
		{"bad \xff utf8 \u202e", "bad ? utf8 ?"},
		{strings.Repeat("x", 300), strings.Repeat("x", 256)},
		{strings.Repeat("x", 255) + "é", strings.Repeat("x", 255) + "?"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if got := handlers.Excerpt([]byte(tt.in), delivery.MaxExcerpt); got != tt.want {
				t.Errorf("sanitize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{"", "ok", "a\r\nb", "\xff\xfe", "\u202ehidden", strings.Repeat("é", 200)} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s := handlers.Excerpt(b, delivery.MaxExcerpt)
		if len(s) > delivery.MaxExcerpt || !utf8.ValidString(s) {
			t.Fatalf("sanitize(%q) = %q: too long or invalid UTF-8", b, s)
		}
		for _, r := range s {
			if unicode.IsControl(r) || !unicode.IsPrint(r) && r != ' ' {
				t.Fatalf("sanitize(%q) = %q holds %U", b, s, r)
			}
		}
	})
}

// FuzzBuild feeds rendered URLs (alert data ends up in them): an accepted URL always targets an
// allowed host without a .. segment, and every refusal is bad_param.
func FuzzBuild(f *testing.F) {
	for _, s := range []string{
		"http://airflow.internal:8080/api/v1/dags/x/dagRuns",
		"http://airflow.internal:8080/api/../admin",
		"http://airflow.internal:8080/@evil.example.com",
		"http://airflow.internal:8080//evil.example.com/x",
		"http://airflow.internal:8080\\@evil.example.com/",
		"https://status.example.com:443/%2e%2e/x?a=b#c",
		"http://evil.example.com#@airflow.internal:8080/",
		"http://[::1]:8080/",
	} {
		f.Add(s, "POST")
	}
	h := New(testOptions("airflow.internal:8080", "status.example.com"))
	f.Fuzz(func(t *testing.T, url, method string) {
		a, err := h.Build(handlers.Params{"url": url, "method": method})
		if err != nil {
			if handlers.ReasonOf(err) != vocab.ReasonBadParam {
				t.Fatalf("Build(%q) error %v has reason %q", url, err, handlers.ReasonOf(err))
			}
			return
		}
		if s := a.Scope(); s != "airflow.internal:8080" && s != "status.example.com" {
			t.Fatalf("Build(%q) accepted scope %q", url, s)
		}
		req, err := http.NewRequest(method, a.(*Action).url, nil)
		if err != nil {
			t.Fatalf("Build(%q) accepted a URL net/http refuses: %v", url, err)
		}
		if canonicalHost(req.URL) != a.Scope() || hasDotDot(req.URL.EscapedPath()) {
			t.Fatalf("Build(%q): request goes to %q path %q, scope %q", url, req.URL.Host, req.URL.Path, a.Scope())
		}
	})
}

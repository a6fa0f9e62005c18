package delivery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gocmp "github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// answer is how the test server answers one request.
type answer struct {
	code   int
	header map[string]string
	body   string
}

// server is a real HTTP server answering from a script (the last answer repeats).
type server struct {
	*httptest.Server
	mu     sync.Mutex
	script []answer
	n      int
}

func newServer(t *testing.T, script ...answer) *server {
	t.Helper()
	s := &server{script: script}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		s.mu.Lock()
		a := s.script[min(s.n, len(s.script)-1)]
		s.n++
		s.mu.Unlock()
		for k, v := range a.header {
			w.Header().Set(k, v)
		}
		w.WriteHeader(a.code)
		_, _ = io.WriteString(w, a.body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *server) requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n
}

func get(t *testing.T, ctx context.Context, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

func TestClassify(t *testing.T) {
	now := time.Now().UTC().Truncate(time.Second)
	ra := func(v string) map[string]string { return map[string]string{"Retry-After": v} }
	longer := " (Retry-After 1h0m0s is longer than 1m0s)"
	tests := []struct {
		name string
		a    answer
		want Verdict
	}{
		{"200", answer{code: 200}, Verdict{}},
		{"202", answer{code: 202}, Verdict{}},
		{"204", answer{code: 204}, Verdict{}},
		{"304 is not a success", answer{code: 304}, Verdict{Reason: vocab.ReasonClientError}},
		{"307 is not followed here", answer{code: 307, header: map[string]string{"Location": "/elsewhere"}},
			Verdict{Reason: vocab.ReasonClientError}},
		{"400", answer{code: 400}, Verdict{Reason: vocab.ReasonClientError}},
		{"404", answer{code: 404}, Verdict{Reason: vocab.ReasonClientError}},
		{"409", answer{code: 409}, Verdict{Reason: vocab.ReasonClientError}},
		{"a 400 with Retry-After is still final", answer{code: 400, header: ra("5")}, Verdict{Reason: vocab.ReasonClientError}},
		{"429 bare: overload", answer{code: 429}, Verdict{Reason: vocab.ReasonServerError, Retry: true}},
		{"429 bad Retry-After counts as none", answer{code: 429, header: ra("soon")},
			Verdict{Reason: vocab.ReasonServerError, Retry: true}},
		{"429 Retry-After 0", answer{code: 429, header: ra("0")}, Verdict{Reason: vocab.ReasonClientError, Retry: true}},
		{"429 Retry-After seconds", answer{code: 429, header: ra("7")},
			Verdict{Reason: vocab.ReasonClientError, Retry: true, RetryAfter: 7 * time.Second}},
		{"429 Retry-After HTTP-date", answer{code: 429, header: ra(now.Add(30 * time.Second).Format(http.TimeFormat))},
			Verdict{Reason: vocab.ReasonClientError, Retry: true, RetryAfter: 30 * time.Second}},
		{"429 Retry-After at the cap", answer{code: 429, header: ra("60")},
			Verdict{Reason: vocab.ReasonClientError, Retry: true, RetryAfter: time.Minute}},
		{"429 Retry-After beyond the cap", answer{code: 429, header: ra("3600")},
			Verdict{Reason: vocab.ReasonClientError, RetryAfter: time.Hour, Note: longer}},
		{"500", answer{code: 500}, Verdict{Reason: vocab.ReasonServerError, Retry: true}},
		{"502", answer{code: 502}, Verdict{Reason: vocab.ReasonServerError, Retry: true}},
		{"500 Retry-After is not honoured", answer{code: 500, header: ra("7")}, Verdict{Reason: vocab.ReasonServerError, Retry: true}},
		{"503 Retry-After honoured", answer{code: 503, header: ra("7")},
			Verdict{Reason: vocab.ReasonServerError, Retry: true, RetryAfter: 7 * time.Second}},
		{"503 Retry-After beyond the cap", answer{code: 503, header: ra("3600")},
			Verdict{Reason: vocab.ReasonServerError, RetryAfter: time.Hour, Note: longer}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.a)
			c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
			resp, err := Send(c, get(t, t.Context(), s.URL), MaxBody)
			if err != nil {
				t.Fatal(err)
			}
			got := Classify(resp.StatusCode, resp.Header, now)
			if diff := gocmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Classify(%d, %v) (-want +got):\n%s", resp.StatusCode, resp.Header, diff)
			}
			if got.Delivered() != (tt.want.Reason == "") {
				t.Errorf("Delivered() = %v for reason %q", got.Delivered(), got.Reason)
			}
		})
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
		{"   ", 0, false},
		{"0", 0, true},
		{" 12 ", 12 * time.Second, true},
		{"86400", 24 * time.Hour, true},
		{"86401", 24 * time.Hour, true},
		{"99999999999999", 24 * time.Hour, true},
		{"999999999999999999999999999999", 24 * time.Hour, true},
		{"-1", 0, false},
		{"-999999999999999999999999999999", 0, false},
		{"1.5", 0, false},
		{"12s", 0, false},
		{"soon", 0, false},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{now.Add(time.Minute).Format(time.RFC850), time.Minute, true},
		{now.Add(time.Minute).Format(time.ANSIC), time.Minute, true},
		{now.Add(time.Minute).Format(time.RFC3339), 0, false},
		{"Fri, 32 Jan 2026 00:00:00 GMT", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := ParseRetryAfter(tt.in, now)
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestClassifyError(t *testing.T) {
	hold := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-hold:
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(hold) }) // runs before Close: releases held requests
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := "http://" + ln.Addr().String()
	ln.Close()
	errPaused := handlers.ErrPaused

	tests := []struct {
		name    string
		url     string
		ctx     func(t *testing.T) (context.Context, context.CancelFunc)
		attempt time.Duration
		want    Verdict
	}{
		{name: "connection refused", url: refused, want: Verdict{Reason: vocab.ReasonServerError, Retry: true}},
		{name: "the attempt timed out", url: slow.URL, attempt: 50 * time.Millisecond,
			want: Verdict{Reason: vocab.ReasonTimeout, Retry: true}},
		{name: "the delivery's deadline", url: slow.URL, want: Verdict{Reason: vocab.ReasonTimeout},
			ctx: func(t *testing.T) (context.Context, context.CancelFunc) {
				return context.WithTimeout(t.Context(), 50*time.Millisecond)
			}},
		{name: "the delivery was cancelled", url: slow.URL, want: Verdict{Reason: vocab.ReasonError},
			ctx: func(t *testing.T) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancel(t.Context())
				time.AfterFunc(50*time.Millisecond, cancel)
				return ctx, cancel
			}},
		{name: "the delivery was paused", url: slow.URL, want: Verdict{Reason: vocab.ReasonPaused},
			ctx: func(t *testing.T) (context.Context, context.CancelFunc) {
				ctx, cancel := context.WithCancelCause(t.Context())
				time.AfterFunc(50*time.Millisecond, func() { cancel(errPaused) })
				return ctx, func() { cancel(nil) }
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			if tt.ctx != nil {
				ctx, cancel = tt.ctx(t)
			}
			defer cancel()
			actx, acancel := context.WithTimeout(ctx, cmp.Or(tt.attempt, 10*time.Second))
			defer acancel()
			resp, err := Send(http.DefaultClient, get(t, actx, tt.url), MaxBody)
			if err == nil {
				t.Fatalf("Send answered %s, want an error", resp.Status)
			}
			if diff := gocmp.Diff(tt.want, ClassifyError(ctx, actx, err)); diff != "" {
				t.Errorf("ClassifyError(%v) (-want +got):\n%s", err, diff)
			}
		})
	}
}

func TestResponseExcerpt(t *testing.T) {
	const secret = "S3CR3T-value-0123456789"
	scrub := func(s string) string { return strings.ReplaceAll(s, secret, "<secret token>") }
	tests := []struct {
		name       string
		body       string
		limit      int64
		scrub      func(string) string
		wantBody   int // bytes read
		wantDetail string
	}{
		{name: "empty", body: "", limit: MaxBody, wantDetail: "400 Bad Request"},
		{name: "spaces collapse", body: "  {\"ok\":\n false}\r\n", limit: MaxBody, wantBody: 18, wantDetail: `400 Bad Request: {"ok": false}`},
		{name: "controls and bad UTF-8", body: "a\x00b \xff \u202e", limit: MaxBody, wantBody: 9, wantDetail: "400 Bad Request: a b ? ?"},
		{name: "cut at MaxExcerpt", body: strings.Repeat("x", 1000), limit: MaxBody, wantBody: 1000,
			wantDetail: "400 Bad Request: " + strings.Repeat("x", MaxExcerpt)},
		{name: "a rune cut in two", body: strings.Repeat("x", MaxExcerpt-1) + "é", limit: MaxBody, wantBody: MaxExcerpt + 1,
			wantDetail: "400 Bad Request: " + strings.Repeat("x", MaxExcerpt-1) + "?"},
		{name: "read at most limit", body: strings.Repeat("y", 100), limit: 10, wantBody: 10,
			wantDetail: "400 Bad Request: " + strings.Repeat("y", 10)},
		{name: "limit 0 reads nothing", body: "hidden", limit: 0, wantDetail: "400 Bad Request"},
		{name: "scrubbed before the cut", body: strings.Repeat("p", MaxExcerpt-5) + secret, limit: MaxBody, scrub: scrub,
			wantBody: MaxExcerpt - 5 + len(secret), wantDetail: "400 Bad Request: " + strings.Repeat("p", MaxExcerpt-5) + "<secr"},
		{name: "scrubbed whole", body: "echo: " + secret, limit: MaxBody, scrub: scrub, wantBody: 6 + len(secret),
			wantDetail: "400 Bad Request: echo: <secret token>"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, answer{code: 400, body: tt.body})
			resp, err := Send(http.DefaultClient, get(t, t.Context(), s.URL), tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.Body) != tt.wantBody || resp.ReadErr != nil {
				t.Errorf("read %d bytes (err %v), want %d", len(resp.Body), resp.ReadErr, tt.wantBody)
			}
			if got := resp.Detail(tt.scrub); got != tt.wantDetail {
				t.Errorf("Detail = %q, want %q", got, tt.wantDetail)
			}
			if ex := resp.Excerpt(tt.scrub); len(ex) > MaxExcerpt || strings.Contains(ex, secret[:4]) {
				t.Errorf("Excerpt = %q: longer than %d bytes or holds a prefix of the secret", ex, MaxExcerpt)
			}
		})
	}
}

// TestSendDrains checks that Send leaves the connection reusable when the rest of the body fits
// MaxBody, and returns without reading an endless body to its end.
func TestSendDrains(t *testing.T) {
	tests := []struct {
		name      string
		size      int // bytes of body; -1: endless
		limit     int64
		wantConns int64 // connections for two requests in a row
	}{
		{name: "read whole", size: 100, limit: MaxBody, wantConns: 1},
		{name: "rest drained", size: 10 + MaxBody - 1, limit: 10, wantConns: 1},
		{name: "nothing read, all drained", size: MaxBody / 2, limit: 0, wantConns: 1},
		{name: "rest too long to drain", size: 10 + 4*MaxBody, limit: 10, wantConns: 2},
		{name: "endless body", size: -1, limit: 10, wantConns: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var conns atomic.Int64
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				chunk := []byte(strings.Repeat("z", 4096))
				for sent := 0; tt.size < 0 || sent < tt.size; sent += len(chunk) {
					n := len(chunk)
					if tt.size >= 0 {
						n = min(n, tt.size-sent)
					}
					if _, err := w.Write(chunk[:n]); err != nil {
						return // the client closed the connection
					}
				}
			}))
			srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
				if s == http.StateNew {
					conns.Add(1)
				}
			}
			srv.Start()
			t.Cleanup(srv.Close)
			c := &http.Client{Transport: &http.Transport{}}
			t.Cleanup(c.CloseIdleConnections)
			ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
			defer cancel()
			for i := range 2 {
				resp, err := Send(c, get(t, ctx, srv.URL), tt.limit)
				if err != nil {
					t.Fatalf("request %d: %v", i+1, err)
				}
				if want := min(tt.limit, int64(max(tt.size, 0))); tt.size >= 0 && int64(len(resp.Body)) != want {
					t.Errorf("request %d read %d bytes, want %d", i+1, len(resp.Body), want)
				}
			}
			if got := conns.Load(); got != tt.wantConns {
				t.Errorf("two requests used %d connections, want %d", got, tt.wantConns)
			}
		})
	}
}

// attempt is one GET of url, classified: the pieces a handler puts together.
func attempt(t *testing.T, ctx context.Context, url string, n int) Attempt {
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := Send(http.DefaultClient, get(t, actx, url), MaxBody)
	if err != nil {
		v := ClassifyError(ctx, actx, err)
		return Attempt{Err: &handlers.Error{Reason: v.Reason, Err: fmt.Errorf("attempt %d: %w", n, err)}, Retry: v.Retry}
	}
	v := Classify(resp.StatusCode, resp.Header, time.Now())
	if v.Delivered() {
		return Attempt{}
	}
	return v.Fail(fmt.Sprintf("attempt %d: %s", n, resp.Detail(nil)))
}

func TestRetry(t *testing.T) {
	ra := func(v string) map[string]string { return map[string]string{"Retry-After": v} }
	tests := []struct {
		name       string
		script     []answer
		retries    int
		backoff    time.Duration
		deadline   time.Duration // 0: none
		wantReason vocab.Reason  // "": delivered
		wantTries  int
		wantWaits  []time.Duration // exact; nil with backoff: checked against the jitter
		wantText   string
	}{
		{name: "delivered at once", script: []answer{{code: 200}}, retries: 2, wantTries: 1},
		{name: "500 500 200", script: []answer{{code: 500}, {code: 500}, {code: 200}}, retries: 2, backoff: 100 * time.Millisecond, wantTries: 3},
		{name: "500 until spent", script: []answer{{code: 500, body: "boom"}}, retries: 2, backoff: 100 * time.Millisecond,
			wantReason: vocab.ReasonServerError, wantTries: 3, wantText: "server_error: attempt 3: 500 Internal Server Error: boom"},
		{name: "no retries", script: []answer{{code: 502}}, wantReason: vocab.ReasonServerError, wantTries: 1},
		{name: "404 is final", script: []answer{{code: 404}}, retries: 2, wantReason: vocab.ReasonClientError, wantTries: 1},
		{name: "503 then 400", script: []answer{{code: 503}, {code: 400}}, retries: 2, backoff: 100 * time.Millisecond,
			wantReason: vocab.ReasonClientError, wantTries: 2},
		{name: "bare 429 until spent", script: []answer{{code: 429}}, retries: 2, backoff: 100 * time.Millisecond,
			wantReason: vocab.ReasonServerError, wantTries: 3},
		{name: "429 with Retry-After until spent", script: []answer{{code: 429, header: ra("3")}}, retries: 2, backoff: 100 * time.Millisecond,
			wantReason: vocab.ReasonClientError, wantTries: 3, wantWaits: []time.Duration{3 * time.Second, 3 * time.Second}},
		{name: "Retry-After replaces the backoff", script: []answer{{code: 503, header: ra("7")}, {code: 200}}, retries: 2, backoff: time.Second,
			wantTries: 2, wantWaits: []time.Duration{7 * time.Second}},
		{name: "Retry-After beyond the cap", script: []answer{{code: 429, header: ra("3600")}}, retries: 2,
			wantReason: vocab.ReasonClientError, wantTries: 1, wantWaits: []time.Duration{},
			wantText: "client_error: attempt 1: 429 Too Many Requests (Retry-After 1h0m0s is longer than 1m0s)"},
		{name: "no time left for the backoff", script: []answer{{code: 500}}, retries: 2, backoff: time.Hour, deadline: time.Minute,
			wantReason: vocab.ReasonServerError, wantTries: 1, wantWaits: []time.Duration{}, wantText: "(no time left to retry after "},
		{name: "no time left for the Retry-After", script: []answer{{code: 429, header: ra("50")}}, retries: 2, deadline: 10 * time.Second,
			wantReason: vocab.ReasonClientError, wantTries: 1, wantWaits: []time.Duration{},
			wantText: "client_error: attempt 1: 429 Too Many Requests (no time left to retry after 50s)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, tt.script...)
			ctx := t.Context()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			waits := []time.Duration{}
			p := Policy{Retries: tt.retries, Backoff: tt.backoff,
				Sleep: func(ctx context.Context, d time.Duration) error { waits = append(waits, d); return ctx.Err() }}
			err := p.Retry(ctx, func(n int) Attempt { return attempt(t, ctx, s.URL, n) })
			if got := reasonOrEmpty(err); got != tt.wantReason {
				t.Fatalf("Retry = %v (reason %q), want reason %q", err, got, tt.wantReason)
			}
			if err != nil && !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not hold %q", err, tt.wantText)
			}
			if err != nil {
				if _, ok := err.(*handlers.Error); !ok { //nolint:errorlint // the outermost error must be one
					t.Errorf("Retry returned a %T, want a *handlers.Error", err)
				}
			}
			if n := s.requests(); n != tt.wantTries {
				t.Errorf("server saw %d requests, want %d", n, tt.wantTries)
			}
			switch {
			case tt.wantWaits != nil:
				if diff := gocmp.Diff(tt.wantWaits, waits); diff != "" {
					t.Errorf("waits (-want +got):\n%s", diff)
				}
			default:
				if len(waits) != tt.wantTries-1 {
					t.Errorf("waited %v, want %d waits", waits, tt.wantTries-1)
				}
				base := tt.backoff
				for i, w := range waits {
					if w < base*8/10 || w > base*12/10 {
						t.Errorf("wait %d = %s, want %s ± 20%%", i+1, w, base)
					}
					base *= 2
				}
			}
		})
	}
}

func reasonOrEmpty(err error) vocab.Reason {
	if err == nil {
		return ""
	}
	return handlers.ReasonOf(err)
}

// TestRetryWaitCancelled cancels the delivery during its wait (the real clock.Sleep): Retry
// returns at once with the attempt's reason and the cause in the chain.
func TestRetryWaitCancelled(t *testing.T) {
	s := newServer(t, answer{code: 503})
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	var logs strings.Builder
	p := Policy{Retries: 2, Backoff: time.Hour, What: "test delivery",
		Log: slog.New(slog.NewTextHandler(&logs, nil))}
	time.AfterFunc(50*time.Millisecond, func() { cancel(handlers.ErrPaused) })
	start := time.Now()
	err := p.Retry(ctx, func(n int) Attempt { return attempt(t, ctx, s.URL, n) })
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Retry took %s: the wait did not end with its context", took)
	}
	if !errors.Is(err, handlers.ErrPaused) || handlers.ReasonOf(err) != vocab.ReasonServerError {
		t.Fatalf("Retry = %v (reason %q), want server_error wrapping the pause", err, handlers.ReasonOf(err))
	}
	if !strings.Contains(err.Error(), "; not retried: responder was paused") {
		t.Errorf("error %q does not say why it was not retried", err)
	}
	if l := logs.String(); !strings.Contains(l, `msg="test delivery failed, retrying" attempt=1 reason=server_error wait_seconds=`) {
		t.Errorf("log lacks the retry warning:\n%s", l)
	}
	if n := s.requests(); n != 1 {
		t.Errorf("server saw %d requests, want 1", n)
	}
}

func TestRetryKeepsOtherErrors(t *testing.T) {
	plain := errors.New("plain")
	err := Policy{Retries: 1, Sleep: func(context.Context, time.Duration) error { return context.Canceled }}.Retry(t.Context(),
		func(int) Attempt { return Attempt{Err: plain, Retry: true} })
	if !errors.Is(err, plain) || !errors.Is(err, context.Canceled) || err.Error() != "plain; not retried: context canceled" {
		t.Errorf("Retry = %v, want the attempt's error and the sleep's", err)
	}
}

func TestBound(t *testing.T) {
	tests := []struct {
		p       Policy
		attempt time.Duration
		want    time.Duration
	}{
		{Policy{}, 10 * time.Second, 11 * time.Second},
		{Policy{Retries: 2, Backoff: 200 * time.Millisecond}, 10 * time.Second, 30*time.Second + 300*time.Millisecond + 600*time.Millisecond + time.Second},
		{Policy{Retries: 3, Backoff: 8 * time.Second}, time.Second, 4*time.Second + 10*time.Second*3 + time.Second},
	}
	for _, tt := range tests {
		if got := tt.p.Bound(tt.attempt); got != tt.want {
			t.Errorf("%+v.Bound(%s) = %s, want %s", tt.p, tt.attempt, got, tt.want)
		}
	}
}

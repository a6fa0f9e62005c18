package httpreq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

const (
	maxResponse = 64 << 10 // bytes of a response read at most
	maxDetail   = 256      // bytes of a response body kept in a result or error
)

// Action is one built request.
type Action struct {
	h      *Handler
	method string
	url    string
	host   string // canonical: lower-case, default port dropped
	path   string // escaped, without query
	header http.Header
	body   string
	class  vocab.Class
}

var _ handlers.Action = (*Action)(nil)

// Target is "METHOD host[:port]/path".
func (a *Action) Target() string { return a.method + " " + a.host + a.path }

// Scope is the host[:port].
func (a *Action) Scope() string { return a.host }

// Class is the class the rule gave (param class), disruptive by default.
func (a *Action) Class() vocab.Class { return a.class }

// Check cannot tell whether a request is still needed.
func (a *Action) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }

// outcome is the result of one attempt.
type outcome struct {
	res        handlers.Result
	err        error
	retry      bool
	retryAfter time.Duration // from a 429's Retry-After; 0 = use the backoff
}

// Do sends the request, retrying 5xx, 429, timeouts and connection errors. Secret references are
// resolved here, once per Do, and their values scrubbed from the result, the error and the logs.
func (a *Action) Do(ctx context.Context, inv handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	var rv handlers.Revealed
	res, err := a.do(ctx, inv.IdempotencyKey, &rv)
	res.Detail = rv.Scrub(res.Detail)
	return res, rv.Error(err)
}

func (a *Action) do(ctx context.Context, key string, rv *handlers.Revealed) (handlers.Result, error) {
	h := a.h
	r, err := a.reveal(ctx, rv)
	if err != nil {
		return handlers.Result{}, err
	}
	r.key = key
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     h.backoff,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         maxBackoff,
	}
	for attempt := 1; ; attempt++ {
		o := a.attempt(ctx, r, rv, attempt)
		if o.err == nil {
			return o.res, nil
		}
		if !o.retry || attempt > h.retries {
			return handlers.Result{}, o.err
		}
		wait := bo.NextBackOff()
		if o.retryAfter > 0 {
			wait = o.retryAfter
		}
		if dl, ok := ctx.Deadline(); ok && h.now().Add(wait).After(dl) {
			return handlers.Result{}, fmt.Errorf("%w (no time left to retry after %s)", o.err, wait)
		}
		h.log.WarnContext(ctx, "http request failed, retrying", "handler", Name, "target", a.Target(),
			"attempt", attempt, "reason", handlers.ReasonOf(o.err), "wait_seconds", wait.Seconds())
		if err := h.sleep(ctx, wait); err != nil {
			return handlers.Result{}, fmt.Errorf("%w; not retried: %w", o.err, err)
		}
	}
}

// request is what one Do sends, secrets resolved.
type request struct {
	url, body, key string
	header         http.Header
}

// reveal resolves the secret references of the url, headers and body.
func (a *Action) reveal(ctx context.Context, rv *handlers.Revealed) (request, error) {
	h := a.h
	r := request{url: a.url, body: a.body, header: a.header.Clone()}
	var err error
	if r.url, err = rv.Reveal(ctx, h.secrets, a.url); err != nil {
		return r, err
	}
	if r.url != a.url {
		// The host is literal in the rule; check that the resolved URL still goes there.
		u, perr := url.Parse(r.url)
		if perr != nil {
			return r, handlers.Fail(vocab.ReasonBadParam, "url: a secret makes it invalid")
		}
		if host, cerr := h.checkURL(u); cerr != nil || host != a.host {
			return r, handlers.Fail(vocab.ReasonBadParam, "url: a secret changes its host")
		}
	}
	if r.body, err = rv.Reveal(ctx, h.secrets, a.body); err != nil {
		return r, err
	}
	for k, vs := range r.header {
		for i, v := range vs {
			if vs[i], err = rv.Reveal(ctx, h.secrets, v); err != nil {
				return r, err
			}
			if err := checkHeader(k, vs[i]); err != nil {
				return r, &handlers.Error{Reason: vocab.ReasonBadParam, Err: err}
			}
		}
	}
	return r, nil
}

func (a *Action) attempt(ctx context.Context, r request, rv *handlers.Revealed, n int) outcome {
	h := a.h
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, a.method, r.url, body)
	if err != nil {
		return outcome{err: handlers.Fail(vocab.ReasonBadParam, "%s", h.redact.Error(err))}
	}
	req.Header = r.header.Clone()
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	log := h.log.With("handler", Name, "target", a.Target(), "attempt", n)
	if err != nil {
		// net/http quotes the whole URL: its query, userinfo and a secret's value.
		msg := &redactedError{msg: rv.Scrub(h.redact.Error(err)), err: err}
		log.DebugContext(ctx, "http request attempt", "error", msg.Error(), "duration_seconds", time.Since(start).Seconds())
		return a.transportError(ctx, actx, n, err, msg)
	}
	defer drain(resp.Body)
	data, readErr := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	log.DebugContext(ctx, "http request attempt", "status", resp.StatusCode, "duration_seconds", time.Since(start).Seconds())
	detail := resp.Status
	// Scrub before sanitize truncates, so no prefix of a secret survives.
	if s := sanitize([]byte(rv.Scrub(string(data)))); s != "" {
		detail += ": " + s
	}
	code := resp.StatusCode
	switch {
	case code >= 200 && code < 300:
		if readErr != nil {
			detail += " (body unread: " + readErr.Error() + ")"
		}
		return outcome{res: handlers.Result{Detail: detail}}
	case code == http.StatusTooManyRequests:
		o := outcome{err: handlers.Fail(vocab.ReasonClientError, "attempt %d: %s", n, detail), retry: true}
		if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), h.now()); ok {
			if d > maxRetryAfter {
				o.err = handlers.Fail(vocab.ReasonClientError, "attempt %d: %s (Retry-After %s is longer than %s)", n, detail, d, maxRetryAfter)
				o.retry = false
			}
			o.retryAfter = d
		}
		return o
	case code >= 500:
		return outcome{err: handlers.Fail(vocab.ReasonServerError, "attempt %d: %s", n, detail), retry: true}
	default:
		return outcome{err: handlers.Fail(vocab.ReasonClientError, "attempt %d: %s", n, detail)}
	}
}

// transportError classifies an error without a response; msg is err's text fit to keep.
func (a *Action) transportError(ctx, actx context.Context, n int, err, msg error) outcome {
	var ne net.Error
	switch {
	case errors.Is(err, errRedirect):
		return outcome{err: &handlers.Error{Reason: vocab.ReasonClientError, Err: fmt.Errorf("attempt %d: %w", n, msg)}}
	case ctx.Err() != nil:
		// The whole action's deadline or cancellation: ReasonOf makes a deadline a timeout.
		return outcome{err: fmt.Errorf("attempt %d: %w", n, context.Cause(ctx))}
	case actx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		return outcome{err: &handlers.Error{Reason: vocab.ReasonTimeout,
			Err: fmt.Errorf("attempt %d: no answer within %s: %w", n, a.h.timeout, msg)}, retry: true}
	default:
		return outcome{err: &handlers.Error{Reason: vocab.ReasonServerError, Err: fmt.Errorf("attempt %d: %w", n, msg)}, retry: true}
	}
}

// redactedError is an error's text made fit to keep. errors.Is still sees the original's
// sentinels (errRedirect, context errors), but nothing can reach the original and print it.
type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string        { return e.msg }
func (e *redactedError) Is(target error) bool { return errors.Is(e.err, target) }

// parseRetryAfter parses a Retry-After value: delay-seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s < 0 {
			return 0, false
		}
		if s > int64(24*time.Hour/time.Second) {
			s = int64(24 * time.Hour / time.Second)
		}
		return time.Duration(s) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// sanitize returns the first maxDetail bytes of b as one line of printable UTF-8.
func sanitize(b []byte) string { return handlers.Excerpt(b, maxDetail) }

// drain reads what is left of a response body, up to a bound, so the connection can be reused.
func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, maxResponse))
	_ = rc.Close()
}

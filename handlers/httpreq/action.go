package httpreq

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/vocab"
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

// NotCheckable marks the action as handlers.NotCheckable: Check calls nobody.
func (a *Action) NotCheckable() {}

// Do sends the request, retrying 5xx, 429, timeouts and connection errors. Secret references are
// resolved here, once per Do, and their values scrubbed from the result, the error and the logs.
func (a *Action) Do(ctx context.Context, inv handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	var rv handlers.Revealed
	res, err := a.do(ctx, inv.IdempotencyKey, &rv)
	res.Detail = rv.Scrub(res.Detail)
	return res, rv.Error(err)
}

func (a *Action) do(ctx context.Context, key string, rv *handlers.Revealed) (handlers.Result, error) {
	r, err := a.reveal(ctx, rv)
	if err != nil {
		return handlers.Result{}, err
	}
	r.key = key
	var res handlers.Result
	err = a.h.policy(a.Target()).Retry(ctx, func(n int) delivery.Attempt {
		var at delivery.Attempt
		res, at = a.attempt(ctx, r, rv, n)
		return at
	})
	if err != nil {
		return handlers.Result{}, err
	}
	return res, nil
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

// attempt sends the request once; the Attempt says whether and when to try again.
func (a *Action) attempt(ctx context.Context, r request, rv *handlers.Revealed, n int) (handlers.Result, delivery.Attempt) {
	h := a.h
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	var body io.Reader = http.NoBody
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req, err := http.NewRequestWithContext(actx, a.method, r.url, body)
	if err != nil {
		return handlers.Result{}, delivery.Attempt{Err: handlers.Fail(vocab.ReasonBadParam, "%s", h.redact.Error(err))}
	}
	req.Header = r.header.Clone()
	if r.key != "" {
		req.Header.Set("Idempotency-Key", r.key)
	}
	start := time.Now()
	resp, err := delivery.Send(h.client, req, delivery.MaxBody)
	log := h.log.With("handler", Name, "target", a.Target(), "attempt", n)
	if err != nil {
		// net/http quotes the whole URL: its query, userinfo and a secret's value.
		msg := handlers.Redacted(err, rv.Scrub(h.redact.Error(err)))
		log.DebugContext(ctx, "http request attempt", "err", msg.Error(), "duration_seconds", time.Since(start).Seconds())
		return handlers.Result{}, a.transportError(ctx, actx, n, err, msg)
	}
	log.DebugContext(ctx, "http request attempt", "status", resp.StatusCode, "duration_seconds", time.Since(start).Seconds())
	detail := resp.Detail(rv.Scrub)
	v := delivery.Classify(resp.StatusCode, resp.Header, h.now())
	if !v.Delivered() {
		return handlers.Result{}, v.Fail(fmt.Sprintf("attempt %d: %s", n, detail))
	}
	if resp.ReadErr != nil {
		detail += " (body unread: " + resp.ReadErr.Error() + ")"
	}
	return handlers.Result{Detail: detail, Fields: map[string]any{"status": resp.StatusCode}}, delivery.Attempt{}
}

// transportError classifies an error without a response; msg is err's text fit to keep.
func (a *Action) transportError(ctx, actx context.Context, n int, err, msg error) delivery.Attempt {
	if errors.Is(err, errRedirect) {
		return delivery.Attempt{Err: &handlers.Error{Reason: vocab.ReasonClientError, Err: fmt.Errorf("attempt %d: %w", n, msg)}}
	}
	v := delivery.ClassifyError(ctx, actx, err)
	switch {
	case ctx.Err() != nil:
		// The whole action's deadline or cancellation: its cause says which.
		msg = context.Cause(ctx)
	case v.Reason == vocab.ReasonTimeout:
		msg = fmt.Errorf("no answer within %s: %w", a.h.timeout, msg)
	}
	return delivery.Attempt{Err: &handlers.Error{Reason: v.Reason, Err: fmt.Errorf("attempt %d: %w", n, msg)}, Retry: v.Retry}
}

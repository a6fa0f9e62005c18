package page

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
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
	redacted    = "<redacted>"
)

// Action is one built event.
type Action struct {
	h           *Handler
	eventAction string
	summary     string
	source      string
	severity    string
	dedupKey    string // "" = from the incident id at Do time
	details     map[string]string
	links       []string
}

var (
	_ handlers.Action     = (*Action)(nil)
	_ handlers.Classifier = (*Action)(nil)
)

// Target is "page:<dedup_key>", or "page:incident" when the dedup key comes from the incident.
func (a *Action) Target() string {
	if a.dedupKey != "" {
		return "page:" + a.dedupKey
	}
	return "page:incident"
}

// Scope is the host[:port] of the events endpoint.
func (a *Action) Scope() string { return a.h.host }

// Class is notify: pages go out even when responder is paused.
func (a *Action) Class() vocab.Class { return vocab.ClassNotify }

// Check cannot tell whether a page is still needed.
func (a *Action) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }

// event is a PagerDuty Events API v2 event.
type event struct {
	RoutingKey  string   `json:"routing_key"`
	EventAction string   `json:"event_action"`
	DedupKey    string   `json:"dedup_key"`
	Payload     *payload `json:"payload,omitempty"`
	Links       []link   `json:"links,omitempty"`
	Client      string   `json:"client"`
}

type payload struct {
	Summary       string            `json:"summary"`
	Source        string            `json:"source"`
	Severity      string            `json:"severity"`
	CustomDetails map[string]string `json:"custom_details,omitempty"`
}

type link struct {
	Href string `json:"href"`
}

// body returns the JSON event for dedupKey. A resolve carries no payload or links.
func (a *Action) body(dedupKey string) ([]byte, error) {
	ev := event{RoutingKey: a.h.routingKey, EventAction: a.eventAction, DedupKey: dedupKey, Client: client}
	if a.eventAction == Trigger {
		ev.Payload = &payload{Summary: a.summary, Source: a.source, Severity: a.severity, CustomDetails: a.details}
		for _, l := range a.links {
			ev.Links = append(ev.Links, link{Href: l})
		}
	}
	return json.Marshal(ev)
}

// outcome is the result of one attempt.
type outcome struct {
	res   handlers.Result
	err   *handlers.Error
	retry bool
}

// Do sends the event, retrying 429, 5xx, timeouts and connection errors. Every error it returns is
// a *handlers.Error; after the retries it is server_error or timeout.
func (a *Action) Do(ctx context.Context, inv handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	h := a.h
	dedupKey := a.dedupKey
	if dedupKey == "" {
		id := inv.IncidentID
		if id == 0 {
			return handlers.Result{}, handlers.Fail(vocab.ReasonBadParam, "%s: no dedup_key and no incident id to derive one from", Name)
		}
		dedupKey = incidentDedupKey(id)
	}
	body, err := a.body(dedupKey)
	if err != nil {
		return handlers.Result{}, handlers.Fail(vocab.ReasonBadParam, "%s: encoding the event: %w", Name, err)
	}
	key := inv.IdempotencyKey
	log := h.log.With("handler", Name, "target", a.Target(), "scope", h.host, "event_action", a.eventAction, "dedup_key", dedupKey)
	bo := &backoff.ExponentialBackOff{
		InitialInterval:     h.backoff,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         maxBackoff,
	}
	for attempt := 1; ; attempt++ {
		o := a.attempt(ctx, body, key, dedupKey, attempt)
		if o.err == nil {
			log.DebugContext(ctx, "page sent", "attempt", attempt)
			return o.res, nil
		}
		if !o.retry || attempt > h.retries {
			return handlers.Result{}, o.err
		}
		wait := bo.NextBackOff()
		if dl, ok := ctx.Deadline(); ok && h.now().Add(wait).After(dl) {
			return handlers.Result{}, &handlers.Error{Reason: o.err.Reason,
				Err: fmt.Errorf("%w (no time left to retry after %s)", o.err.Err, wait)}
		}
		log.WarnContext(ctx, "page failed, retrying", "attempt", attempt, "reason", o.err.Reason, "wait_seconds", wait.Seconds())
		if err := h.sleep(ctx, wait); err != nil {
			return handlers.Result{}, &handlers.Error{Reason: o.err.Reason, Err: fmt.Errorf("%w; not retried: %w", o.err.Err, err)}
		}
	}
}

func (a *Action) attempt(ctx context.Context, body []byte, key, dedupKey string, n int) outcome {
	h := a.h
	fail := func(reason vocab.Reason, retry bool, format string, args ...any) outcome {
		msg := fmt.Sprintf("%s %s to %s: attempt %d: %s", Name, a.eventAction, h.host, n, fmt.Sprintf(format, args...))
		return outcome{err: &handlers.Error{Reason: reason, Err: errors.New(h.scrub(msg))}, retry: retry}
	}
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return fail(vocab.ReasonBadParam, false, "building the request failed")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.userAgent)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	start := time.Now()
	resp, err := h.client.Do(req)
	log := h.log.With("handler", Name, "dedup_key", dedupKey, "attempt", n)
	if err != nil {
		log.DebugContext(ctx, "page attempt", "error", h.scrub(transportMessage(err)), "duration_seconds", time.Since(start).Seconds())
		return a.transportError(ctx, actx, n, err)
	}
	defer drain(resp.Body)
	data, _ := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	log.DebugContext(ctx, "page attempt", "status", resp.StatusCode, "duration_seconds", time.Since(start).Seconds())
	detail := resp.Status
	// Scrub before sanitize truncates, so no prefix of the key survives.
	if s := sanitize([]byte(h.scrub(string(data)))); s != "" {
		detail += ": " + s
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return outcome{res: handlers.Result{Detail: h.scrub(fmt.Sprintf("%s %s: %s", a.eventAction, dedupKey, detail))}}
	case code == http.StatusTooManyRequests, code >= 500:
		return fail(vocab.ReasonServerError, true, "%s", detail)
	default:
		return fail(vocab.ReasonClientError, false, "%s", detail)
	}
}

// transportError classifies an error without a response.
func (a *Action) transportError(ctx, actx context.Context, n int, err error) outcome {
	h := a.h
	msg := fmt.Sprintf("%s %s to %s: attempt %d: ", Name, a.eventAction, h.host, n)
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		// The whole action's deadline or cancellation: not retried.
		cause := context.Cause(ctx)
		reason := vocab.ReasonError
		if errors.Is(cause, context.DeadlineExceeded) {
			reason = vocab.ReasonTimeout
		}
		return outcome{err: &handlers.Error{Reason: reason, Err: fmt.Errorf("%s%w", msg, cause)}}
	case actx.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		return outcome{err: &handlers.Error{Reason: vocab.ReasonTimeout,
			Err: errors.New(h.scrub(msg + fmt.Sprintf("no answer within %s", h.timeout)))}, retry: true}
	default:
		return outcome{err: &handlers.Error{Reason: vocab.ReasonServerError,
			Err: errors.New(h.scrub(msg + transportMessage(err)))}, retry: true}
	}
}

// transportMessage is err's text without the request URL, whose query may hold a token.
func transportMessage(err error) string {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		return ue.Err.Error()
	}
	return err.Error()
}

// scrub removes the routing key from s (a downstream may echo the body back).
func (h *Handler) scrub(s string) string {
	if h.routingKey == "" {
		return s
	}
	return strings.ReplaceAll(s, h.routingKey, redacted)
}

// sanitize returns the first maxDetail bytes of b as one line of printable UTF-8.
func sanitize(b []byte) string { return handlers.Excerpt(b, maxDetail) }

// drain reads what is left of a response body, up to a bound, so the connection can be reused.
func drain(rc io.ReadCloser) {
	_, _ = io.Copy(io.Discard, io.LimitReader(rc, maxResponse))
	_ = rc.Close()
}

package page

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/vocab"
)

const redacted = "<redacted>"

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

// NotCheckable marks the action as handlers.NotCheckable: Check calls nobody.
func (a *Action) NotCheckable() {}

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

// Do sends the event, retrying 429, 5xx, timeouts and connection errors (see handlers/delivery).
// Every error it returns is a *handlers.Error; after the retries it is server_error or timeout
// (client_error for a 429 that named a Retry-After).
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
	var res handlers.Result
	p := delivery.Policy{Retries: h.retries, Backoff: h.backoff, Sleep: h.sleep, Now: h.now, Log: log, What: "page"}
	err = p.Retry(ctx, func(n int) delivery.Attempt {
		var at delivery.Attempt
		if res, at = a.attempt(ctx, body, key, dedupKey, n); at.Err == nil {
			log.DebugContext(ctx, "page sent", "attempt", n)
		}
		return at
	})
	if err != nil {
		return handlers.Result{}, err
	}
	return res, nil
}

// attempt sends the event once; the Attempt says whether and when to try again. Its error is a
// *handlers.Error whose message holds no routing key.
func (a *Action) attempt(ctx context.Context, body []byte, key, dedupKey string, n int) (handlers.Result, delivery.Attempt) {
	h := a.h
	prefix := fmt.Sprintf("%s %s to %s: attempt %d: ", Name, a.eventAction, h.host, n)
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return handlers.Result{}, delivery.Attempt{Err: handlers.Fail(vocab.ReasonBadParam, "%s", h.scrub(prefix+"building the request failed"))}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.userAgent)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	start := time.Now()
	resp, err := delivery.Send(h.client, req, delivery.MaxBody)
	log := h.log.With("handler", Name, "dedup_key", dedupKey, "attempt", n)
	if err != nil {
		log.DebugContext(ctx, "page attempt", "err", h.scrub(transportMessage(err)), "duration_seconds", time.Since(start).Seconds())
		return handlers.Result{}, a.transportError(ctx, actx, prefix, err)
	}
	log.DebugContext(ctx, "page attempt", "status", resp.StatusCode, "duration_seconds", time.Since(start).Seconds())
	// Scrubbed before the excerpt is cut, so no prefix of the key survives.
	detail := resp.Detail(h.scrub)
	v := delivery.Classify(resp.StatusCode, resp.Header, h.now())
	if !v.Delivered() {
		return handlers.Result{}, v.Fail(h.scrub(prefix + detail))
	}
	return handlers.Result{Detail: h.scrub(fmt.Sprintf("%s %s: %s", a.eventAction, dedupKey, detail))}, delivery.Attempt{}
}

// transportError classifies an error without a response.
func (a *Action) transportError(ctx, actx context.Context, prefix string, err error) delivery.Attempt {
	v := delivery.ClassifyError(ctx, actx, err)
	var msg error
	switch {
	case ctx.Err() != nil:
		// The whole action's deadline or cancellation: its cause says which; not retried.
		msg = fmt.Errorf("%s%w", prefix, context.Cause(ctx))
	case v.Reason == vocab.ReasonTimeout:
		msg = errors.New(a.h.scrub(prefix + fmt.Sprintf("no answer within %s", a.h.timeout)))
	default:
		msg = errors.New(a.h.scrub(prefix + transportMessage(err)))
	}
	return delivery.Attempt{Err: &handlers.Error{Reason: v.Reason, Err: msg}, Retry: v.Retry}
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

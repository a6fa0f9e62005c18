package page

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// TeamsName is page.teams's name in rule files.
const TeamsName = "page.teams"

// TeamsOptions configure page.teams.
type TeamsOptions struct {
	// URL is the Workflows (or legacy incoming) webhook URL, handlers.page.teams.url. It is a
	// secret: it appears nowhere but in the request. Empty leaves the handler unconfigured.
	URL string
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
	// Retries is how many times a 429, 5xx, timeout or connection error is retried: 0 means the
	// default (2), a negative value means never.
	Retries int
	// Backoff is the first retry delay, doubled on each retry (default 500ms).
	Backoff time.Duration
	// Client sends the requests (default: a client with its own transport). It is copied and never
	// follows redirects.
	Client *http.Client
	// Version goes in the User-Agent (default "dev").
	Version string
	// Logger receives one line per attempt (default: discard).
	Logger *slog.Logger
	// Incidents reads the incident's rule and actions for the card (nil: the card names the
	// incident only).
	Incidents Incidents
}

// Teams is the page.teams handler. It implements handlers.Handler and handlers.StaticValidator.
type Teams struct {
	url       string
	host      string   // canonical host[:port] of url: the scope
	secrets   []string // the parts of url that hold its credential, scrubbed from what is kept
	confErr   error
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	userAgent string
	client    *http.Client
	log       *slog.Logger
	incidents Incidents
	sent      sentKeys
	sleep     func(ctx context.Context, d time.Duration) error
	now       func() time.Time
}

var (
	_ handlers.Handler         = (*Teams)(nil)
	_ handlers.StaticValidator = (*Teams)(nil)
)

// NewTeams returns a page.teams handler. An empty or invalid URL leaves it registered but
// unconfigured: rules using it load, and Build fails with bad_param (see ConfigError).
func NewTeams(o TeamsOptions) *Teams {
	h := &Teams{
		timeout:   cmp.Or(o.Timeout, DefaultTimeout),
		retries:   retriesOf(o.Retries),
		backoff:   cmp.Or(o.Backoff, DefaultBackoff),
		userAgent: "responder/" + cmp.Or(o.Version, "dev"),
		log:       cmp.Or(o.Logger, slog.New(slog.DiscardHandler)),
		incidents: o.Incidents,
		client:    noRedirects(o.Client),
		sleep:     clock.Sleep,
		now:       time.Now,
	}
	if strings.TrimSpace(o.URL) == "" {
		h.confErr = errors.New("handlers.page.teams is not configured (needs url or url_file)")
	} else {
		h.url, h.host, h.confErr = parseURL("handlers.page.teams url", o.URL)
	}
	if u, err := url.Parse(h.url); err == nil && h.confErr == nil {
		// Longest first: the whole URL, then its path or query (a Workflows URL's sig=, an
		// incoming webhook's path).
		for _, s := range []string{h.url, u.EscapedPath(), u.RawQuery} {
			if len(s) >= minSecretPart {
				h.secrets = append(h.secrets, s)
			}
		}
	}
	return h
}

// minSecretPart is the shortest part of the URL treated as its credential: shorter ones ("/") are
// too common to scrub.
const minSecretPart = 16

// scrub removes the URL's credential from s (an endpoint may echo the request back).
func (h *Teams) scrub(s string) string {
	for _, p := range h.secrets {
		s = strings.ReplaceAll(s, p, redacted)
	}
	return s
}

// retriesOf applies the Options.Retries convention: 0 is the default, negative is none.
func retriesOf(n int) int {
	switch {
	case n == 0:
		return DefaultRetries
	case n < 0:
		return 0
	}
	return n
}

// noRedirects returns a copy of c (a fresh client when nil) that never follows redirects: the
// request holds the endpoint's credential.
func noRedirects(c *http.Client) *http.Client {
	var out http.Client
	if c != nil {
		out = *c
	} else {
		out.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	out.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &out
}

// ConfigError says why the handler cannot post (nil when it can), for a startup line.
func (h *Teams) ConfigError() error { return h.confErr }

const teamsExample = `rules:
  - name: backend-down-teams
    when: alert.name == "api-health" && alert.status == "firing"
    for: 1m
    actions:
      - handler: page.teams
        params:
          title: "{{ alert.labels.service }} /health is failing"
          text: "The API has failed its health check for over a minute."
          links: ["https://runbooks.example.com/backend-down"]
    # No on_resolved needed: when the incident resolves, responder posts a "resolved" card itself.
`

// Spec describes page.teams.
func (h *Teams) Spec() handlers.Spec {
	return handlers.Spec{
		Name: TeamsName,
		Doc: "Posts an Adaptive Card to a Microsoft Teams channel through handlers.page.teams (a Workflows or " +
			"incoming webhook): the incident, rule, alert, labels, the incident's actions and links; a second card " +
			"when the incident resolves. 429, 5xx and timeouts are retried, other 4xx fail (client_error).",
		Params: []handlers.Param{
			{Name: "title", Type: handlers.String, Doc: "the card's title (default: the alert's name; at most 250 characters)"},
			{Name: "text", Type: handlers.String, Doc: "what happened (default: the alert's summary annotation; at most 4000 characters)"},
			{Name: "links", Type: handlers.StringList, Doc: "http(s) links shown as buttons, after the alert's runbook_url, dashboard_url and source"},
			{Name: "status", Type: handlers.String, Static: true,
				Doc: "firing or resolved (default firing; responder posts the resolved card itself when the incident resolves)"},
		},
		Class:             vocab.ClassNotify,
		DefaultApproval:   handlers.ApprovalNone,
		DefaultTimeout:    incidentReadTimeout + delivery.Policy{Retries: h.retries, Backoff: h.backoff}.Bound(h.timeout),
		Target:            `"teams:<host>", qualified by the incident`,
		TargetPerIncident: true,
		ResolveParams:     resolvedParams,
		Scope:             "host[:port] of handlers.page.teams url",
		Example:           teamsExample,
	}
}

// ValidateStatic checks literal params as written in a rule file. It accepts rules for an
// unconfigured handler: they fail when built.
func (h *Teams) ValidateStatic(raw handlers.Params) error {
	return validateNoteParams(raw)
}

// validateNoteParams checks the literal status and links shared by page.teams and page.email.
func validateNoteParams(raw handlers.Params) error {
	var errs []error
	if s, ok := raw["status"].(string); ok && !handlers.IsTemplate(s) {
		if _, err := parseStatus(s); err != nil {
			errs = append(errs, err)
		}
	}
	if l, ok := raw["links"].([]any); ok {
		for _, e := range l {
			if s, ok := e.(string); ok && !handlers.IsTemplate(s) {
				if err := checkLink(s); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// Build validates rendered params and returns the card to post. Every error is bad_param.
func (h *Teams) Build(p handlers.Params) (handlers.Action, error) {
	if h.confErr != nil {
		return nil, &handlers.Error{Reason: vocab.ReasonBadParam, Err: h.confErr}
	}
	n, err := buildNote(h.Spec(), p)
	if err != nil {
		return nil, &handlers.Error{Reason: vocab.ReasonBadParam, Err: err}
	}
	return &TeamsAction{h: h, note: n}, nil
}

// note is what the params of page.teams and page.email have in common.
type note struct {
	title  string // page.teams title, page.email subject; "" = the default
	text   string // page.teams text, page.email body; "" = the default
	links  []string
	status string
}

// buildNote checks rendered params against spec and reads the common ones; title is "title" or
// "subject", text is "text" or "body", whichever spec declares.
func buildNote(spec handlers.Spec, p handlers.Params) (note, error) {
	if err := checkRendered(spec, p); err != nil {
		return note{}, err
	}
	str := func(k string) string { s, _ := p[k].(string); return s }
	n := note{title: cmp.Or(str("title"), str("subject")), text: cmp.Or(str("text"), str("body")), status: StatusFiring}
	if s, ok := p["status"].(string); ok {
		var err error
		if n.status, err = parseStatus(s); err != nil {
			return note{}, err
		}
	}
	if l, ok := p["links"].([]any); ok {
		for _, e := range l {
			s, _ := e.(string)
			if err := checkLink(s); err != nil {
				return note{}, err
			}
			n.links = append(n.links, s)
		}
	}
	return n, nil
}

// TeamsAction is one card to post.
type TeamsAction struct {
	h    *Teams
	note note
}

var (
	_ handlers.Action       = (*TeamsAction)(nil)
	_ handlers.Classifier   = (*TeamsAction)(nil)
	_ handlers.NotCheckable = (*TeamsAction)(nil)
)

// Target is "teams:<host>"; the engine qualifies it with the incident.
func (a *TeamsAction) Target() string { return "teams:" + a.h.host }

// Scope is the host[:port] of the webhook URL.
func (a *TeamsAction) Scope() string { return a.h.host }

// Class is notify: cards go out even when responder is paused.
func (a *TeamsAction) Class() vocab.Class { return vocab.ClassNotify }

// Check cannot tell whether a card is still needed.
func (a *TeamsAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }

// NotCheckable marks the action as handlers.NotCheckable: Check calls nobody.
func (a *TeamsAction) NotCheckable() {}

// Do posts the card, retrying 429, 5xx, timeouts and connection errors (see handlers/delivery);
// a legacy connector's "200 OK" that reports a failure in its body counts as that failure. A key
// already delivered by this handler is not posted again. Every error is a *handlers.Error.
func (a *TeamsAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	h := a.h
	key := inv.IdempotencyKey
	if d, ok := h.sent.get(key); ok {
		return handlers.Result{Detail: "already posted: " + d}, nil
	}
	log := h.log.With("handler", TeamsName, "scope", h.host, "status", a.note.status, "incident_id", inv.IncidentID)
	info := readIncident(ctx, h.incidents, inv, log)
	body, err := a.card(info, al, h.now())
	if err != nil {
		return handlers.Result{}, handlers.Fail(vocab.ReasonBadParam, "%s: encoding the card: %w", TeamsName, err)
	}
	var res handlers.Result
	p := delivery.Policy{Retries: h.retries, Backoff: h.backoff, Sleep: h.sleep, Now: h.now, Log: log, What: "teams card"}
	err = p.Retry(ctx, func(n int) delivery.Attempt {
		var at delivery.Attempt
		if res, at = a.attempt(ctx, body, key, n, log); at.Err == nil {
			log.DebugContext(ctx, "teams card posted", "attempt", n)
		}
		return at
	})
	if err != nil {
		return handlers.Result{}, err
	}
	h.sent.add(key, res.Detail)
	return res, nil
}

// attempt posts the card once; the Attempt says whether and when to try again.
func (a *TeamsAction) attempt(ctx context.Context, body []byte, key string, n int, log *slog.Logger) (handlers.Result, delivery.Attempt) {
	h := a.h
	prefix := fmt.Sprintf("%s %s card to %s: attempt %d: ", TeamsName, a.note.status, h.host, n)
	actx, cancel := context.WithTimeout(ctx, h.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, h.url, bytes.NewReader(body))
	if err != nil {
		return handlers.Result{}, delivery.Attempt{Err: handlers.Fail(vocab.ReasonBadParam, "%sbuilding the request failed", prefix)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", h.userAgent)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	start := time.Now()
	resp, err := delivery.Send(h.client, req, delivery.MaxBody)
	if err != nil {
		log.DebugContext(ctx, "teams attempt", "attempt", n, "err", transportMessage(err), "duration_seconds", time.Since(start).Seconds())
		return handlers.Result{}, transportAttempt(ctx, actx, prefix, err, h.timeout)
	}
	log.DebugContext(ctx, "teams attempt", "attempt", n, "status_code", resp.StatusCode, "duration_seconds", time.Since(start).Seconds())
	detail := resp.Detail(h.scrub)
	v := delivery.Classify(resp.StatusCode, resp.Header, h.now())
	if v.Delivered() {
		if code, ok := connectorFailure(resp.Body); ok {
			v = delivery.Classify(code, http.Header{}, h.now())
			if v.Delivered() { // a 2xx inside the failure text: still a failure, and unexplained
				v = delivery.Verdict{Reason: vocab.ReasonServerError, Retry: true}
			}
		}
	}
	if !v.Delivered() {
		return handlers.Result{}, v.Fail(prefix + detail)
	}
	return handlers.Result{Detail: fmt.Sprintf("%s card posted to %s: %s", a.note.status, h.host, detail)}, delivery.Attempt{}
}

// transportAttempt classifies an attempt that got no answer. Its message holds no URL.
func transportAttempt(ctx, actx context.Context, prefix string, err error, timeout time.Duration) delivery.Attempt {
	v := delivery.ClassifyError(ctx, actx, err)
	var msg error
	switch {
	case ctx.Err() != nil:
		msg = fmt.Errorf("%s%w", prefix, context.Cause(ctx))
	case v.Reason == vocab.ReasonTimeout:
		msg = fmt.Errorf("%sno answer within %s", prefix, timeout)
	default:
		msg = errors.New(prefix + transportMessage(err))
	}
	return delivery.Attempt{Err: &handlers.Error{Reason: v.Reason, Err: msg}, Retry: v.Retry}
}

// connectorFailure recognises the answer of a legacy Office 365 connector that failed: it says
// "200 OK" and puts "Webhook message delivery failed with error: Microsoft Teams endpoint returned
// HTTP error 429 ..." in the body. It returns that status (500 when the text names none).
func connectorFailure(body []byte) (int, bool) {
	const marker = "Webhook message delivery failed"
	s := string(body)
	if !strings.HasPrefix(strings.TrimSpace(s), marker) {
		return 0, false
	}
	_, rest, ok := strings.Cut(s, "HTTP error ")
	if !ok || len(rest) < 3 {
		return http.StatusInternalServerError, true
	}
	code := 0
	for _, c := range rest[:3] {
		if c < '0' || c > '9' {
			return http.StatusInternalServerError, true
		}
		code = code*10 + int(c-'0')
	}
	if code < 100 {
		return http.StatusInternalServerError, true
	}
	return code, true
}

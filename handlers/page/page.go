package page

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// Name is the handler's name in rule files.
const Name = "page.webhook"

// Defaults for Options.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 2
	DefaultBackoff = 500 * time.Millisecond
)

// PagerDuty Events API v2 limits and defaults.
const (
	maxSummary      = 1024 // characters of payload.summary
	maxDedupKey     = 255  // characters of dedup_key
	defaultSource   = "responder"
	defaultSeverity = "critical"
	client          = "responder"
)

// Event actions.
const (
	Trigger = "trigger"
	Resolve = "resolve"
)

var severities = []string{"critical", "error", "warning", "info"}

// Options configure the handler.
type Options struct {
	// URL is the events endpoint (handlers.page.webhook url), e.g.
	// https://events.pagerduty.com/v2/enqueue. Empty leaves the handler unconfigured.
	URL string
	// RoutingKey is the integration (routing) key. It is a secret: it goes in the request body and
	// nowhere else. Empty leaves the handler unconfigured.
	RoutingKey string
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
	// Retries is how many times a 429, 5xx, timeout or connection error is retried: 0 means the
	// default (2), a negative value means never.
	Retries int
	// Backoff is the first retry delay, doubled on each retry (default 500ms).
	Backoff time.Duration
	// Client sends the requests (default: a client with its own transport). It is copied and never
	// follows redirects (the body holds the routing key).
	Client *http.Client
	// Version goes in the User-Agent (default "dev").
	Version string
	// Logger receives one line per attempt (default: discard).
	Logger *slog.Logger
}

// Handler is the page.webhook handler. It implements handlers.Handler and handlers.StaticValidator.
type Handler struct {
	url        string
	host       string // canonical host[:port] of url: the scope
	routingKey string
	confErr    error // why the handler cannot send; nil when configured
	timeout    time.Duration
	retries    int
	backoff    time.Duration
	userAgent  string
	client     *http.Client
	log        *slog.Logger
	// sleep waits d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
}

var (
	_ handlers.Handler         = (*Handler)(nil)
	_ handlers.StaticValidator = (*Handler)(nil)
)

// Handlers is the package's handlers.Constructor: page.webhook, page.teams and page.email,
// configured from handlers.page. Unconfigured, each is registered anyway (see New, NewTeams,
// NewEmail) and says so in the log. page.teams and page.email read the incident's actions through
// an Incidents client (the store) when env has one.
func Handlers(env handlers.Env) ([]handlers.Handler, error) {
	pc := env.Config.Handlers.Page
	w := pc.Webhook
	h := New(Options{URL: w.URL.Value(), RoutingKey: w.RoutingKey.Value(), Timeout: w.Timeout.D(),
		Version: env.Version, Logger: env.Logger})
	if err := h.ConfigError(); err != nil {
		h.log.Info("page.webhook is not configured; rules using it will fail with bad_param", "err", err)
	}
	incidents, _ := handlers.ClientOf[Incidents](env)
	teams := NewTeams(TeamsOptions{URL: pc.Teams.URL.Value(), Timeout: pc.Teams.Timeout.D(), Version: env.Version,
		Logger: env.Logger, Incidents: incidents})
	if pc.Teams.Configured() && teams.ConfigError() != nil {
		teams.log.Warn("page.teams is misconfigured; rules using it will fail with bad_param", "err", teams.ConfigError())
	}
	email, err := newEmailFromConfig(env, pc.Email, incidents)
	if err != nil {
		return nil, err
	}
	return []handlers.Handler{h, teams, email}, nil
}

// newEmailFromConfig builds page.email from handlers.page.email.
func newEmailFromConfig(env handlers.Env, e config.PageEmailConfig, incidents Incidents) (*Email, error) {
	s := e.SMTP
	var roots *x509.CertPool
	if len(s.CA) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(s.CA) {
			return nil, fmt.Errorf("handlers.page.email.smtp.ca_file: %s holds no PEM certificate", s.CAFile)
		}
	}
	h := NewEmail(EmailOptions{Host: s.Host, Port: s.Port, StartTLS: s.StartTLS, RootCAs: roots, Hello: s.Hello,
		Username: s.Username, Password: s.Password.Value(), From: e.From, To: e.To, Timeout: e.Timeout.D(),
		Version: env.Version, Logger: env.Logger, Incidents: incidents})
	if e.Configured() && h.ConfigError() != nil {
		h.log.Warn("page.email is misconfigured; rules using it will fail with bad_param", "err", h.ConfigError())
	}
	return h, nil
}

// New returns a page.webhook handler. An empty or invalid URL or an empty routing key leaves it
// registered but unconfigured: rules using it load, and Build fails with bad_param (see
// ConfigError).
func New(o Options) *Handler {
	h := &Handler{
		routingKey: o.RoutingKey,
		timeout:    cmp.Or(o.Timeout, DefaultTimeout),
		retries:    o.Retries,
		backoff:    cmp.Or(o.Backoff, DefaultBackoff),
		userAgent:  "responder/" + cmp.Or(o.Version, "dev"),
		log:        o.Logger,
		sleep:      clock.Sleep,
		now:        time.Now,
	}
	switch {
	case h.retries == 0:
		h.retries = DefaultRetries
	case h.retries < 0:
		h.retries = 0
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	var c http.Client
	if o.Client != nil {
		c = *o.Client
	} else {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	h.client = &c
	switch {
	case strings.TrimSpace(o.URL) == "" || o.RoutingKey == "":
		h.confErr = errors.New("handlers.page.webhook is not configured (needs url and routing_key)")
	default:
		h.url, h.host, h.confErr = parseURL("handlers.page.webhook url", o.URL)
	}
	return h
}

// ConfigError says why the handler cannot send pages (nil when it can), for a startup warning.
func (h *Handler) ConfigError() error { return h.confErr }

// parseURL checks an endpoint (what names the config key in errors) and returns it with its
// canonical host. Errors never quote the URL, whose path or query may hold a token.
func parseURL(what, raw string) (string, string, error) {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil {
		return "", "", fmt.Errorf("%s is not a valid URL", what)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", "", fmt.Errorf("%s: scheme %q is not http or https", what, u.Scheme)
	}
	if u.Hostname() == "" {
		return "", "", fmt.Errorf("%s has no host", what)
	}
	host := strings.ToLower(u.Host)
	if p := u.Port(); (u.Scheme == "https" && p == "443") || (u.Scheme == "http" && p == "80") {
		host = strings.TrimSuffix(host, ":"+p)
	}
	return u.String(), host, nil
}

const example = `rules:
  - name: page-on-crashloop
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: page.webhook
        params:
          summary: "{{ alert.labels.pod }} is crash looping"
          severity: critical
          details: {namespace: "{{ alert.labels.namespace }}", pod: "{{ alert.labels.pod }}"}
          links: ["https://runbooks.example.com/crashloop"]
    # No on_resolved needed: when the incident resolves, responder sends the resolve event itself.
`

// Spec describes page.webhook.
func (h *Handler) Spec() handlers.Spec {
	return handlers.Spec{
		Name: Name,
		Doc: "Sends a PagerDuty Events API v2 event (trigger or resolve) to handlers.page.webhook, " +
			"deduplicated per incident; 429, 5xx and timeouts are retried, other 4xx fail (client_error).",
		Params: []handlers.Param{
			{Name: "summary", Type: handlers.String, Required: true,
				Doc: "the page title (truncated to 1024 characters)"},
			{Name: "severity", Type: handlers.String,
				Doc: "critical, error, warning or info (default critical)"},
			{Name: "source", Type: handlers.String,
				Doc: `the affected system (default "responder")`},
			{Name: "event_action", Type: handlers.String, Static: true,
				Doc: "trigger or resolve (default trigger)"},
			{Name: "dedup_key", Type: handlers.String,
				Doc: "deduplication key, at most 255 characters (default responder-incident-<incident id>)"},
			{Name: "details", Type: handlers.StringMap,
				Doc: "custom_details of the event"},
			{Name: "links", Type: handlers.StringList,
				Doc: "http(s) links shown with the incident"},
		},
		Class:             vocab.ClassNotify,
		DefaultApproval:   handlers.ApprovalNone,
		DefaultTimeout:    h.doTimeout(),
		Target:            `"page:<dedup_key>", or "page:incident" when dedup_key is not given; qualified by the incident`,
		TargetPerIncident: true,
		ResolveParams:     resolveParams,
		Scope:             "host[:port] of handlers.page.webhook url",
		Example:           example,
	}
}

// doTimeout is an upper bound of one Do: every attempt timing out plus the longest backoffs.
func (h *Handler) doTimeout() time.Duration {
	return delivery.Policy{Retries: h.retries, Backoff: h.backoff}.Bound(h.timeout)
}

// ValidateStatic checks literal params as written in a rule file. It accepts rules for an
// unconfigured handler: they fail when built.
func (h *Handler) ValidateStatic(raw handlers.Params) error {
	var errs []error
	literal := func(k string) (string, bool) {
		s, ok := raw[k].(string)
		return s, ok && !handlers.IsTemplate(s)
	}
	if s, ok := literal("severity"); ok {
		if _, err := parseSeverity(s); err != nil {
			errs = append(errs, err)
		}
	}
	if s, ok := literal("event_action"); ok {
		if _, err := parseEventAction(s); err != nil {
			errs = append(errs, err)
		}
	}
	if s, ok := literal("dedup_key"); ok {
		if err := checkDedupKey(s); err != nil {
			errs = append(errs, err)
		}
	}
	if s, ok := literal("source"); ok && strings.TrimSpace(s) == "" {
		errs = append(errs, errors.New("source may not be empty"))
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

// Build validates rendered params and returns the event to send. Every error is bad_param.
func (h *Handler) Build(p handlers.Params) (handlers.Action, error) {
	a, err := h.build(p)
	if err != nil {
		return nil, &handlers.Error{Reason: vocab.ReasonBadParam, Err: err}
	}
	return a, nil
}

func (h *Handler) build(p handlers.Params) (*Action, error) {
	if h.confErr != nil {
		return nil, h.confErr
	}
	if err := checkRendered(h.Spec(), p); err != nil {
		return nil, err
	}
	str := func(k, def string) string {
		if s, ok := p[k].(string); ok {
			return s
		}
		return def
	}
	a := &Action{h: h, summary: truncate(str("summary", ""), maxSummary), source: str("source", defaultSource)}
	var err error
	if a.eventAction, err = parseEventAction(str("event_action", Trigger)); err != nil {
		return nil, err
	}
	if a.severity, err = parseSeverity(str("severity", defaultSeverity)); err != nil {
		return nil, err
	}
	if a.eventAction == Trigger {
		if strings.TrimSpace(a.summary) == "" {
			return nil, errors.New("summary may not be empty")
		}
		if strings.TrimSpace(a.source) == "" {
			return nil, errors.New("source may not be empty")
		}
	}
	if k, ok := p["dedup_key"].(string); ok {
		if err := checkDedupKey(k); err != nil {
			return nil, err
		}
		a.dedupKey = k
	}
	if m, ok := p["details"].(map[string]any); ok && len(m) > 0 {
		a.details = make(map[string]string, len(m))
		for k, v := range m {
			a.details[k], _ = v.(string)
		}
	}
	if l, ok := p["links"].([]any); ok {
		for _, e := range l {
			s, _ := e.(string)
			if err := checkLink(s); err != nil {
				return nil, err
			}
			a.links = append(a.links, s)
		}
	}
	return a, nil
}

// checkRendered checks rendered params against spec: all declared, summary present, types right.
func checkRendered(spec handlers.Spec, p handlers.Params) error {
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(p)) {
		sp, ok := spec.Param(k)
		if !ok {
			errs = append(errs, fmt.Errorf("handler %q has no param %q", spec.Name, k))
			continue
		}
		if err := handlers.CheckType(sp, p[k]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, sp := range spec.Params {
		if _, ok := p[sp.Name]; sp.Required && !ok {
			errs = append(errs, fmt.Errorf("handler %q needs param %q", spec.Name, sp.Name))
		}
	}
	return errors.Join(errs...)
}

func parseSeverity(s string) (string, error) {
	if l := strings.ToLower(strings.TrimSpace(s)); slices.Contains(severities, l) {
		return l, nil
	}
	return "", fmt.Errorf("severity %q is not one of %s", s, strings.Join(severities, ", "))
}

func parseEventAction(s string) (string, error) {
	switch s {
	case Trigger, Resolve:
		return s, nil
	}
	return "", fmt.Errorf("event_action %q is neither trigger nor resolve", s)
}

func checkDedupKey(k string) error {
	switch n := utf8.RuneCountInString(k); {
	case strings.TrimSpace(k) == "":
		return errors.New("dedup_key may not be empty")
	case n > maxDedupKey:
		return fmt.Errorf("dedup_key has %d characters, more than %d", n, maxDedupKey)
	}
	return nil
}

func checkLink(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("link %q is not an absolute http(s) URL", s)
	}
	return nil
}

// truncate returns s cut to at most n characters, the last one an ellipsis when cut.
func truncate(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// incidentDedupKey is the default dedup key of an incident.
func incidentDedupKey(id int64) string { return "responder-incident-" + strconv.FormatInt(id, 10) }

// resolveParams turns the params of a trigger that was sent into those of its resolve event: the
// same dedup key, so the pager closes the incident it opened.
func resolveParams(sent handlers.Params) (handlers.Params, bool) {
	if ea, _ := sent["event_action"].(string); ea == Resolve {
		return nil, false
	}
	p := maps.Clone(sent)
	p["event_action"] = Resolve
	return p, true
}

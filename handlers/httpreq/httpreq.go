package httpreq

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// Name is the handler's name in rule files.
const Name = "http.request"

// Defaults for Options.
const (
	DefaultTimeout = 10 * time.Second
	DefaultRetries = 2
	DefaultBackoff = 200 * time.Millisecond
)

const maxRedirects = 10

// Options configure the handler.
type Options struct {
	// AllowedHosts are the hosts (host or host:port) requests may go to, redirects included.
	AllowedHosts []string
	// Timeout bounds one attempt (default 10s).
	Timeout time.Duration
	// Retries is how many times a 5xx, 429, timeout or connection error is retried: 0 means the
	// default (2), a negative value means never.
	Retries int
	// Client sends the requests (default: a client with its own transport). It is copied; its
	// CheckRedirect is replaced by the allow-list check.
	Client *http.Client
	// Backoff is the first retry delay, doubled on each retry (default 200ms).
	Backoff time.Duration
	// Version goes in the User-Agent (default "dev").
	Version string
	// Logger receives one line per attempt (default: discard).
	Logger *slog.Logger
	// Secrets resolves secret("NAME") references in the url, headers and body when a request is
	// sent (nil: a reference fails the action with bad_param).
	Secrets handlers.Secrets
	// SecretPathHosts are hosts whose URL paths embed a secret, in addition to
	// handlers.DefaultSecretPathHosts: targets, errors and logs show no path for them.
	SecretPathHosts []string
}

// Handler is the http.request handler. It implements handlers.Handler and handlers.StaticValidator.
type Handler struct {
	allowed   map[string]bool // lower-cased AllowedHosts
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	userAgent string
	client    *http.Client
	log       *slog.Logger
	secrets   handlers.Secrets
	redact    handlers.URLRedactor
	// sleep waits d or until ctx is done; tests replace it.
	sleep func(ctx context.Context, d time.Duration) error
	now   func() time.Time
	// spec is Spec(), made once: Build checks every rendered action against it.
	spec handlers.Spec
}

var (
	_ handlers.Handler         = (*Handler)(nil)
	_ handlers.StaticValidator = (*Handler)(nil)
)

// Handlers is the package's handlers.Constructor: http.request configured from
// handlers.http (allowed_hosts, timeout, retries, secret_path_hosts).
func Handlers(env handlers.Env) ([]handlers.Handler, error) {
	c := env.Config.Handlers.HTTP
	retries := DefaultRetries
	if c.Retries != nil {
		retries = *c.Retries
	}
	return []handlers.Handler{New(Options{AllowedHosts: c.AllowedHosts, Timeout: c.Timeout.D(), Retries: retries,
		Version: env.Version, Logger: env.Logger, Secrets: env.Secrets, SecretPathHosts: c.SecretPathHosts})}, nil
}

// New returns an http.request handler.
func New(o Options) *Handler {
	h := &Handler{
		allowed:   make(map[string]bool, len(o.AllowedHosts)),
		timeout:   cmp.Or(o.Timeout, DefaultTimeout),
		retries:   o.Retries,
		backoff:   cmp.Or(o.Backoff, DefaultBackoff),
		userAgent: "responder/" + cmp.Or(o.Version, "dev"),
		log:       o.Logger,
		secrets:   o.Secrets,
		redact:    handlers.NewURLRedactor(o.SecretPathHosts),
		sleep:     clock.Sleep,
		now:       time.Now,
	}
	for _, a := range o.AllowedHosts {
		h.allowed[strings.ToLower(strings.TrimSpace(a))] = true
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
	c.CheckRedirect = h.checkRedirect
	h.client = &c
	h.spec = h.Spec()
	return h
}

const example = `rules:
  - name: retrigger-billing
    when: alert.name == "BillingIngestStale" && alert.status == "firing"
    actions:
      - handler: http.request
        params:
          url: "http://airflow.internal:8080/api/v1/dags/billing_ingest/dagRuns"
          method: POST
          headers: {X-Alert-Fingerprint: "{{ alert.fingerprint }}"}
          body: '{{ toJSON({conf: {reason: alert.name}}) }}'
`

// Spec describes http.request.
func (h *Handler) Spec() handlers.Spec {
	return handlers.Spec{
		Name: Name,
		Doc: "Sends one HTTP request to an allow-listed host (handlers.http.allowed_hosts), with an " +
			"Idempotency-Key header; 2xx succeeds, 4xx fails (client_error), 5xx and timeouts are retried.",
		Params: []handlers.Param{
			{Name: "url", Type: handlers.String, Required: true, URL: true, Secret: true, Target: true,
				Doc: "http(s) URL; scheme and host must be literal and allowed, path and query may be templated " +
					"(rendered values are escaped) and may hold secret(\"NAME\")"},
			{Name: "method", Type: handlers.String, Target: true,
				Doc: "GET, POST, PUT, PATCH, DELETE or HEAD (default POST)"},
			{Name: "headers", Type: handlers.StringMap, Secret: true,
				Doc: "request headers; Idempotency-Key and Host are set by responder; values may hold secret(\"NAME\")"},
			{Name: "body", Type: handlers.String, Secret: true,
				Doc: "request body; JSON gets Content-Type application/json unless set; may hold secret(\"NAME\")"},
			{Name: "class", Type: handlers.String, Static: true,
				Doc: "notify or disruptive (default disruptive): notify requests run even when paused"},
		},
		Class:           vocab.ClassDisruptive,
		ClassParam:      "class",
		DefaultApproval: handlers.ApprovalNone,
		DefaultTimeout:  h.doTimeout(),
		Target: "METHOD host[:port]/path (upper-case method, lower-case host, no query; the path is " +
			handlers.RedactedPath + " on a secret-bearing host or when it holds a secret)",
		Scope:   "host[:port]",
		Example: example,
		Results: []handlers.ResultField{
			{Name: "status", Type: handlers.Int, Doc: "the HTTP status code of the answer that succeeded (2xx)"},
		},
	}
}

// doTimeout is an upper bound of one Do: every attempt timing out plus the longest backoffs.
func (h *Handler) doTimeout() time.Duration {
	return delivery.Policy{Retries: h.retries, Backoff: h.backoff}.Bound(h.timeout)
}

// policy is how a Do of target retries.
func (h *Handler) policy(target string) delivery.Policy {
	return delivery.Policy{Retries: h.retries, Backoff: h.backoff, Sleep: h.sleep, Now: h.now,
		Log: h.log.With("handler", Name, "target", target), What: "http request"}
}

// ValidateStatic checks the params as written in a rule file.
func (h *Handler) ValidateStatic(raw handlers.Params) error {
	var errs []error
	if u, ok := raw["url"].(string); ok {
		if err := h.checkStaticURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	if m, ok := raw["method"].(string); ok && !handlers.IsTemplate(m) {
		if _, err := parseMethod(m); err != nil {
			errs = append(errs, err)
		}
	}
	if c, ok := raw["class"].(string); ok {
		if _, err := parseClass(c); err != nil {
			errs = append(errs, err)
		}
	}
	if hs, ok := raw["headers"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(hs)) {
			v, _ := hs[k].(string)
			if handlers.IsTemplate(v) {
				v = ""
			}
			if err := checkHeader(k, v); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Build validates rendered params and returns the request to send.
func (h *Handler) Build(p handlers.Params) (handlers.Action, error) {
	a, err := h.build(p)
	if err != nil {
		return nil, &handlers.Error{Reason: vocab.ReasonBadParam, Err: err}
	}
	return a, nil
}

func (h *Handler) build(p handlers.Params) (*Action, error) {
	if err := checkRendered(h.spec, p); err != nil {
		return nil, err
	}
	a := &Action{h: h, method: http.MethodPost, class: vocab.ClassDisruptive, header: http.Header{}}
	raw, _ := p["url"].(string)
	u, host, err := h.parseURL(withoutSecrets(raw))
	if err != nil {
		return nil, err
	}
	if hasDotDot(u.EscapedPath()) {
		return nil, fmt.Errorf("url path %q has a .. segment", h.redact.Path(host, u.EscapedPath()))
	}
	a.url, a.host = u.String(), host
	a.path = h.redact.Path(host, cmp.Or(u.EscapedPath(), "/"))
	if len(config.FindSecretRefs(raw)) > 0 {
		a.url = raw // resolved when sent
		if p, _, _ := strings.Cut(raw, "?"); len(config.FindSecretRefs(p)) > 0 {
			a.path = handlers.RedactedPath
		}
	}
	if m, ok := p["method"].(string); ok {
		if a.method, err = parseMethod(m); err != nil {
			return nil, err
		}
	}
	if c, ok := p["class"].(string); ok {
		if a.class, err = parseClass(c); err != nil {
			return nil, err
		}
	}
	if hs, ok := p["headers"].(map[string]any); ok {
		for _, k := range slices.Sorted(maps.Keys(hs)) {
			v, _ := hs[k].(string)
			if err := checkHeader(k, v); err != nil {
				return nil, err
			}
			a.header.Set(k, v)
		}
	}
	a.body, _ = p["body"].(string)
	// The keys are canonical already (header.Set would canonicalise them again per action).
	if a.header.Get("Content-Type") == "" && looksJSON(withoutSecrets(a.body)) {
		a.header["Content-Type"] = []string{"application/json"}
	}
	if a.header.Get("User-Agent") == "" {
		a.header["User-Agent"] = []string{h.userAgent}
	}
	return a, nil
}

// checkRendered checks rendered params against spec: all declared, url present, types right.
func checkRendered(spec handlers.Spec, p handlers.Params) error {
	if _, ok := p["url"]; ok && renderedOK(spec, p) {
		return nil
	}
	var errs []error // in key order
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
	if _, ok := p["url"]; !ok {
		errs = append(errs, fmt.Errorf("handler %q needs param %q", spec.Name, "url"))
	}
	return errors.Join(errs...)
}

// renderedOK reports whether every rendered param is declared and of its type (checkRendered's
// common case, without sorting the keys).
func renderedOK(spec handlers.Spec, p handlers.Params) bool {
	for k, v := range p {
		sp, ok := spec.Param(k)
		if !ok || handlers.CheckType(sp, v) != nil {
			return false
		}
	}
	return true
}

func parseMethod(m string) (string, error) {
	switch up := strings.ToUpper(m); up {
	case http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodHead:
		return up, nil
	}
	return "", fmt.Errorf("method %q is not one of GET, POST, PUT, PATCH, DELETE, HEAD", m)
}

func parseClass(c string) (vocab.Class, error) {
	switch vocab.Class(c) {
	case vocab.ClassNotify, vocab.ClassDisruptive:
		return vocab.Class(c), nil
	}
	return "", fmt.Errorf("class %q is neither notify nor disruptive", c)
}

// checkHeader checks a header name and (literal) value. Idempotency-Key and Host are responder's.
func checkHeader(name, value string) error {
	if !isToken(name) {
		return fmt.Errorf("header name %q is not a valid HTTP token", name)
	}
	switch http.CanonicalHeaderKey(name) {
	case "Idempotency-Key", "Host", "Content-Length", "Transfer-Encoding", "Connection":
		return fmt.Errorf("header %q is set by responder and may not be overridden", name)
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return fmt.Errorf("value of header %q holds a line break or NUL", name)
	}
	return nil
}

// isToken reports whether s is an RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}

// withoutSecrets returns s with each secret reference replaced by a plain word, for the checks
// Build makes before the values are known (a URL's host, a JSON body's shape).
func withoutSecrets(s string) string {
	refs := config.FindSecretRefs(s)
	for i := len(refs) - 1; i >= 0; i-- {
		s = s[:refs[i].Start] + "secret" + s[refs[i].End:]
	}
	return s
}

func looksJSON(body string) bool {
	b := strings.TrimSpace(body)
	return (strings.HasPrefix(b, "{") || strings.HasPrefix(b, "[")) && json.Valid([]byte(b))
}

package page

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/vocab"
)

// EmailName is page.email's name in rule files.
const EmailName = "page.email"

// Defaults of EmailOptions.
const (
	DefaultEmailTimeout = 30 * time.Second
	DefaultEmailBackoff = 2 * time.Second
)

// Bounds of an email.
const (
	maxSubject    = 200 // characters, before the [FIRING] or [RESOLVED] prefix
	maxBody       = 64 << 10
	maxRecipients = 50
)

// EmailOptions configure page.email (handlers.page.email).
type EmailOptions struct {
	// Host and Port are the mail server's (submission: port 587). An empty Host, From or To leaves
	// the handler unconfigured.
	Host string
	Port int
	// StartTLS upgrades every connection before anything else is sent and verifies the server's
	// certificate for Host; a server that does not offer it fails the email. Only a loopback Host
	// may go without (config.IsLoopbackHost).
	StartTLS bool
	// RootCAs verify the server's certificate (nil: the system roots).
	RootCAs *x509.CertPool
	// Hello is the EHLO name (default: the machine's host name, else "localhost").
	Hello string
	// Username and Password authenticate with AUTH PLAIN, only over TLS (or to a loopback host).
	// The password is a secret: it appears in no log, result or error.
	Username, Password string
	// From is the sender; To the default recipients (a rule's to param replaces them).
	From string
	To   []string
	// Timeout bounds one attempt, connection to QUIT (default 30s).
	Timeout time.Duration
	// Retries is how many times a 4xx reply, a timeout or a connection error is retried: 0 means
	// the default (2), a negative value means never.
	Retries int
	// Backoff is the first retry delay, doubled on each retry (default 2s).
	Backoff time.Duration
	// Version goes in the message's X-Mailer header (default "dev").
	Version string
	// Logger receives one line per attempt (default: discard).
	Logger *slog.Logger
	// Incidents reads the incident's rule and actions for the body (nil: the email names the
	// incident only).
	Incidents Incidents
}

// Email is the page.email handler. It implements handlers.Handler and handlers.StaticValidator.
type Email struct {
	addr      string // host:port
	host      string
	startTLS  bool
	rootCAs   *x509.CertPool
	hello     string
	username  string
	password  string
	from      *mail.Address
	to        []*mail.Address
	confErr   error
	timeout   time.Duration
	retries   int
	backoff   time.Duration
	mailer    string
	log       *slog.Logger
	incidents Incidents
	sent      sentKeys
	sleep     func(ctx context.Context, d time.Duration) error
	now       func() time.Time
}

var (
	_ handlers.Handler         = (*Email)(nil)
	_ handlers.StaticValidator = (*Email)(nil)
)

// NewEmail returns a page.email handler. Without a host, a sender or recipients (or with invalid
// ones) it stays registered but unconfigured: rules using it load, and Build fails with bad_param
// (see ConfigError).
func NewEmail(o EmailOptions) *Email {
	h := &Email{
		host:      strings.TrimSuffix(strings.TrimPrefix(o.Host, "["), "]"),
		startTLS:  o.StartTLS,
		rootCAs:   o.RootCAs,
		hello:     o.Hello,
		username:  o.Username,
		password:  o.Password,
		timeout:   cmp.Or(o.Timeout, DefaultEmailTimeout),
		retries:   retriesOf(o.Retries),
		backoff:   cmp.Or(o.Backoff, DefaultEmailBackoff),
		mailer:    "responder/" + cmp.Or(o.Version, "dev"),
		log:       cmp.Or(o.Logger, slog.New(slog.DiscardHandler)),
		incidents: o.Incidents,
		sleep:     clock.Sleep,
		now:       time.Now,
	}
	if h.hello == "" {
		h.hello, _ = os.Hostname()
		if h.hello == "" || !validHello(h.hello) {
			h.hello = "localhost"
		}
	}
	h.addr = net.JoinHostPort(h.host, strconv.Itoa(cmp.Or(o.Port, config.DefaultSMTPPort)))
	h.confErr = h.configure(o)
	return h
}

// validHello reports whether s can go in EHLO: letters, digits, '-', '_' and '.'.
func validHello(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '.' && r != '_'
	})
}

// configure checks the options and parses the addresses.
func (h *Email) configure(o EmailOptions) error {
	const key = "handlers.page.email"
	switch {
	case strings.TrimSpace(o.Host) == "" || strings.TrimSpace(o.From) == "" || len(o.To) == 0:
		return errors.New(key + " is not configured (needs smtp.host, from and to)")
	case !o.StartTLS && !config.IsLoopbackHost(o.Host):
		return fmt.Errorf("%s: starttls may be off only for a loopback host, not %q", key, o.Host)
	case (o.Username == "") != (o.Password == ""):
		return errors.New(key + ": smtp.username and smtp.password go together")
	case !validHello(h.hello):
		return fmt.Errorf("%s: smtp.hello %q is not a host name", key, h.hello)
	}
	var err error
	if h.from, err = parseMailbox(o.From); err != nil {
		return fmt.Errorf("%s.from: %w", key, err)
	}
	if h.to, err = parseMailboxes(o.To); err != nil {
		return fmt.Errorf("%s.to: %w", key, err)
	}
	return nil
}

// parseMailbox parses one address ("Name <a@example.com>" or a bare one) that has a domain.
func parseMailbox(s string) (*mail.Address, error) {
	if err := config.CheckMailbox(s); err != nil {
		return nil, err
	}
	return mail.ParseAddress(s)
}

// parseMailboxes parses recipients: at least one, at most maxRecipients, none twice.
func parseMailboxes(ss []string) ([]*mail.Address, error) {
	if len(ss) == 0 {
		return nil, errors.New("no recipients")
	}
	if len(ss) > maxRecipients {
		return nil, fmt.Errorf("%d recipients, more than %d", len(ss), maxRecipients)
	}
	var out []*mail.Address
	for _, s := range ss {
		a, err := parseMailbox(s)
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(b *mail.Address) bool { return strings.EqualFold(b.Address, a.Address) }) {
			return nil, fmt.Errorf("%s is listed twice", a.Address)
		}
		out = append(out, a)
	}
	return out, nil
}

// ConfigError says why the handler cannot send (nil when it can), for a startup line.
func (h *Email) ConfigError() error { return h.confErr }

const emailExample = `rules:
  - name: disk-low-email
    when: alert.name == "data-disk" && alert.status == "firing"
    actions:
      - handler: page.email
        params:
          subject: "{{ alert.labels.instance }} is running out of disk space"
          body: "Free space is {{ humanizePercentage(alert.value) }}."
    # No on_resolved needed: when the incident resolves, responder sends a "[RESOLVED]" email itself.
`

// Spec describes page.email.
func (h *Email) Spec() handlers.Spec {
	return handlers.Spec{
		Name: EmailName,
		Doc: "Sends one email per incident transition (firing, then resolved) over SMTP with STARTTLS and AUTH " +
			"(handlers.page.email); its Message-ID comes from the action's idempotency key, so receivers can drop " +
			"a duplicate. 4xx replies, timeouts and connection errors are retried; 5xx replies fail (client_error).",
		Params: []handlers.Param{
			{Name: "subject", Type: handlers.String,
				Doc: "the subject, after [FIRING] or [RESOLVED] (default: the alert's name, the incident and the rule; at most 200 characters)"},
			{Name: "body", Type: handlers.String,
				Doc: "the text, followed by the incident's facts, actions and links (default: the alert's summary annotation)"},
			{Name: "to", Type: handlers.StringList, Static: true,
				Doc: "recipients, replacing handlers.page.email.to (literal addresses: alert data cannot redirect mail)"},
			{Name: "links", Type: handlers.StringList, Doc: "http(s) links listed after the alert's runbook_url, dashboard_url and source"},
			{Name: "status", Type: handlers.String, Static: true,
				Doc: "firing or resolved (default firing; responder sends the resolved email itself when the incident resolves)"},
		},
		Class:             vocab.ClassNotify,
		DefaultApproval:   handlers.ApprovalNone,
		DefaultTimeout:    incidentReadTimeout + delivery.Policy{Retries: h.retries, Backoff: h.backoff}.Bound(h.timeout),
		Target:            `"email:<recipients>", qualified by the incident`,
		TargetPerIncident: true,
		ResolveParams:     resolvedParams,
		Scope:             "host:port of handlers.page.email.smtp",
		Example:           emailExample,
	}
}

// ValidateStatic checks literal params as written in a rule file: status, links and the
// recipients. It accepts rules for an unconfigured handler: they fail when built.
func (h *Email) ValidateStatic(raw handlers.Params) error {
	errs := []error{validateNoteParams(raw)}
	if l, ok := raw["to"].([]any); ok {
		var to []string
		for _, e := range l {
			if s, ok := e.(string); ok {
				to = append(to, s)
			}
		}
		if _, err := parseMailboxes(to); err != nil {
			errs = append(errs, fmt.Errorf("to: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Build validates rendered params and returns the email to send. Every error is bad_param.
func (h *Email) Build(p handlers.Params) (handlers.Action, error) {
	bad := func(err error) error { return &handlers.Error{Reason: vocab.ReasonBadParam, Err: err} }
	if h.confErr != nil {
		return nil, bad(h.confErr)
	}
	n, err := buildNote(h.Spec(), p)
	if err != nil {
		return nil, bad(err)
	}
	if len(n.text) > maxBody {
		return nil, bad(fmt.Errorf("body has %d bytes, more than %d", len(n.text), maxBody))
	}
	a := &EmailAction{h: h, note: n, to: h.to}
	if l, ok := p["to"].([]any); ok {
		var to []string
		for _, e := range l {
			s, _ := e.(string)
			to = append(to, s)
		}
		if a.to, err = parseMailboxes(to); err != nil {
			return nil, bad(fmt.Errorf("to: %w", err))
		}
	}
	return a, nil
}

// EmailAction is one email to send.
type EmailAction struct {
	h    *Email
	note note
	to   []*mail.Address
}

var (
	_ handlers.Action       = (*EmailAction)(nil)
	_ handlers.Classifier   = (*EmailAction)(nil)
	_ handlers.NotCheckable = (*EmailAction)(nil)
)

// Target is "email:" and the recipients' addresses, sorted; the engine qualifies it with the
// incident.
func (a *EmailAction) Target() string {
	addrs := make([]string, len(a.to))
	for i, t := range a.to {
		addrs[i] = strings.ToLower(t.Address)
	}
	slices.Sort(addrs)
	return "email:" + strings.Join(addrs, ",")
}

// Scope is the mail server's host:port.
func (a *EmailAction) Scope() string { return a.h.addr }

// Class is notify: emails go out even when responder is paused.
func (a *EmailAction) Class() vocab.Class { return vocab.ClassNotify }

// Check cannot tell whether an email is still needed.
func (a *EmailAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }

// NotCheckable marks the action as handlers.NotCheckable: Check calls nobody.
func (a *EmailAction) NotCheckable() {}

// Do sends the email, retrying 4xx replies, timeouts and connection errors. A key already
// delivered by this handler is not sent again; every attempt of one action carries the same
// Message-ID. Every error is a *handlers.Error, and none holds the password.
func (a *EmailAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	h := a.h
	key := inv.IdempotencyKey
	if d, ok := h.sent.get(key); ok {
		return handlers.Result{Detail: "already sent: " + d}, nil
	}
	log := h.log.With("handler", EmailName, "scope", h.addr, "status", a.note.status, "incident_id", inv.IncidentID)
	info := readIncident(ctx, h.incidents, inv, log)
	m := a.message(key, info, al)
	log = log.With("message_id", m.id)
	p := delivery.Policy{Retries: h.retries, Backoff: h.backoff, Sleep: h.sleep, Now: h.now, Log: log, What: "email"}
	err := p.Retry(ctx, func(n int) delivery.Attempt {
		start := time.Now()
		at := a.attempt(ctx, m, n)
		log.DebugContext(ctx, "email attempt", "attempt", n, "reason", reasonOrEmpty(at.Err), "duration_seconds", time.Since(start).Seconds())
		return at
	})
	if err != nil {
		return handlers.Result{}, err
	}
	res := handlers.Result{Detail: fmt.Sprintf("%s email %s sent to %d recipients through %s", a.note.status, m.id, len(a.to), h.addr)}
	h.sent.add(key, res.Detail)
	return res, nil
}

func reasonOrEmpty(err error) string {
	if err == nil {
		return ""
	}
	return string(handlers.ReasonOf(err))
}

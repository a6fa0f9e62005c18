// Package console is responder's web console under /ui/: server-rendered pages (html/template,
// embedded with the package) for the humans on call. They show the incidents, one incident with
// everything needed to decide (labels, annotations, the timeline of its audit rows, each action with
// its params, evidence and guards' verdicts), the actions awaiting approval with the time left, the
// status (the kill switch, circuit breakers, budgets, the leader, the bus backlog, dead letters),
// a search of the audit trail and the drill runs (what a drill caused is marked DRILL); and they
// let an admin approve and deny (when named an approver), pause and resume, and reset a breaker.
//
// The console works without JavaScript: the browser authenticates with HTTP basic auth (or an
// authenticating proxy; Options.Authenticate decides), forms POST and are answered with a 303 back
// to the page, and pages refresh themselves with a meta refresh. Every form carries a CSRF token,
// every answer the security headers (securityHeaders), and all output is escaped by html/template:
// alert labels are attacker-controlled.
//
// Decisions go through the same path as the API and Slack (Store.Decide: the engine's approval
// policy), so a double click is a replay, the two-person rule and approvals.ttl hold.
package console

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/store"
)

// Prefix is the path the console is served under.
const Prefix = "/ui/"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Store is what the console reads and the decisions it makes. The application implements it with
// the store and the engine (app/console.go); every method takes the request's context.
type Store interface {
	// Incidents is a page of incidents, newest first, and the cursor of the next page.
	Incidents(ctx context.Context, f store.IncidentFilter) ([]store.Incident, string, error)
	// Incident is one incident with its actions (params already redacted), its audit rows and its
	// latest alert; store.ErrNotFound when there is none.
	Incident(ctx context.Context, id int64) (*Incident, error)
	// AwaitingApproval is every action awaiting approval (params already redacted), newest first.
	AwaitingApproval(ctx context.Context) ([]store.Action, error)
	// PendingApprovals counts the actions awaiting approval.
	PendingApprovals(ctx context.Context) (int, error)
	// Audit is a page of audit rows, newest first, and the cursor of the next page.
	Audit(ctx context.Context, f store.AuditFilter) ([]store.AuditEntry, string, error)
	// Status is the state of the safety switches; a part that could not be read says so in its
	// Err field (never a zero that an operator would act on).
	Status(ctx context.Context) Status
	// Drills is a page of drill runs (without their reports), newest first, and the cursor of
	// the next page.
	Drills(ctx context.Context, f store.DrillFilter) ([]store.DrillRun, string, error)
	// RuleNames are the names of the rules running now (the filters' suggestions).
	RuleNames() []string
	// Decide records approver's decision (store.DecisionApprove or store.DecisionDeny) on an
	// action through the engine's approval policy, as the API and Slack do, and wakes the
	// executor.
	Decide(ctx context.Context, actionID int64, approver, decision, via string) (store.DecisionResult, error)
	// Pause turns the kill switch on for d (0: until resumed), recorded with by and reason.
	Pause(ctx context.Context, by, reason string, d time.Duration) (store.PauseState, error)
	// Resume turns the kill switch off, recorded with by and reason.
	Resume(ctx context.Context, by, reason string) (store.PauseState, error)
	// ResetBreaker closes the circuit breaker of (handler, scope), recorded with by; false when
	// there is no such breaker.
	ResetBreaker(ctx context.Context, handler, scope, by string) (bool, error)
}

// Incident is what the incident page shows: the incident with its actions and audit rows
// (store.GetIncident) and the latest alert received for it (its annotations, its source's link).
type Incident struct {
	store.Incident
	Alert alert.Alert
}

// Status is the status page: the kill switch, breakers, budgets, the leader, the bus. An Err field
// holds why its part could not be read ("" when it was).
type Status struct {
	// Paused is what is in force: the pause row (Pause) or safety.paused (ConfigPaused).
	Paused       bool
	ConfigPaused bool
	Pause        store.PauseState
	PauseErr     string
	DryRun       bool

	Breakers    []store.Breaker
	BreakersErr string
	Budgets     []Budget

	Leader Leader

	BusPending    uint64
	BusPendingErr string

	DeadLetters    int64 // not replayed
	DeadLettersErr string

	ApprovalsPending    int
	ApprovalsPendingErr string

	Version  string
	Rules    int
	RuleHash string
}

// Budget is one of safety.budgets with the most any scope used in its window.
type Budget struct {
	Name, Match, Per, Window string
	Max, MostUsed            int
	Err                      string // why MostUsed could not be read
}

// Left is how many actions the busiest scope may still take in the window.
func (b Budget) Left() int { return max(b.Max-b.MostUsed, 0) }

// Leader is this replica's view of the leader lease.
type Leader struct {
	Replica string
	Leading bool
	Token   int64
}

// Options configure the console.
type Options struct {
	// Authenticate says who a request comes from; an error answers 401 with a basic-auth
	// challenge, so the browser asks for a user and a password.
	Authenticate func(*http.Request) (identity.Principal, error)
	// Approvers may approve and deny (approvals.approvers.web), when their role is admin.
	Approvers []string
	// Store is what the pages read and the decisions they make.
	Store Store
	// ApprovalTTL is approvals.ttl: an action awaiting approval expires this long after it was
	// planned (0: never). The pages show the time left.
	ApprovalTTL time.Duration
	// CSRFKey signs the CSRF tokens and the flash messages (default: random per process; then a
	// form rendered by one replica or before a restart is refused by another: give every replica
	// the same key behind a load balancer without sticky sessions).
	CSRFKey []byte
	// Refresh is how often a page refreshes itself when auto-refresh is on (default 30s).
	Refresh time.Duration
	Now     func() time.Time
	Logger  *slog.Logger
}

// console serves the pages.
type console struct {
	o        Options
	pages    map[string]*template.Template
	static   http.Handler
	cssHash  string // the style sheet's version, in its URL: it may be cached for long
	csrfKey  []byte
	approver map[string]bool
}

// New builds the console's handler, to be mounted at Prefix.
func New(o Options) (http.Handler, error) {
	c, err := newConsole(o)
	if err != nil {
		return nil, err
	}
	return c.routes(), nil
}

func newConsole(o Options) (*console, error) {
	if o.Authenticate == nil || o.Store == nil {
		return nil, errors.New("console: Authenticate and Store are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Refresh <= 0 {
		o.Refresh = 30 * time.Second
	}
	c := &console{o: o, csrfKey: o.CSRFKey, approver: map[string]bool{}}
	if len(c.csrfKey) == 0 {
		c.csrfKey = make([]byte, 32)
		if _, err := rand.Read(c.csrfKey); err != nil {
			return nil, fmt.Errorf("console: CSRF key: %w", err)
		}
	}
	for _, n := range o.Approvers {
		c.approver[n] = true
	}
	css, err := staticFS.ReadFile("static/style.css")
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(css)
	c.cssHash = hex.EncodeToString(h[:6])
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix(Prefix+"static/", http.FileServerFS(sub))
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	return c, nil
}

// pageNames are the templates under templates/, each rendered inside layout.html.
var pageNames = []string{"incidents", "incident", "actions", "status", "audit", "drills", "error"}

func parsePages() (map[string]*template.Template, error) {
	pages := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

func (c *console) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+Prefix+"{$}", c.page(c.incidents))
	mux.HandleFunc("GET "+Prefix+"incidents/{id}", c.page(c.incident))
	mux.HandleFunc("GET "+Prefix+"actions", c.page(c.actions))
	mux.HandleFunc("GET "+Prefix+"status", c.page(c.status))
	mux.HandleFunc("GET "+Prefix+"audit", c.page(c.audit))
	mux.HandleFunc("GET "+Prefix+"drills", c.page(c.drills))
	mux.HandleFunc("POST "+Prefix+"actions/{id}/approve", c.form(c.decide(store.DecisionApprove)))
	mux.HandleFunc("POST "+Prefix+"actions/{id}/deny", c.form(c.decide(store.DecisionDeny)))
	mux.HandleFunc("POST "+Prefix+"pause", c.form(c.pause))
	mux.HandleFunc("POST "+Prefix+"resume", c.form(c.resume))
	mux.HandleFunc("POST "+Prefix+"breakers/reset", c.form(c.resetBreaker))
	mux.HandleFunc(Prefix, c.page(func(w http.ResponseWriter, r *http.Request, v *view) (string, int) {
		return c.fail(v, http.StatusNotFound, "There is no such page.")
	}))
	// The style sheet is public: no authentication (a bcrypt per request saved).
	mux.Handle("GET "+Prefix+"static/", http.HandlerFunc(c.serveStatic))
	return securityHeaders(mux)
}

// securityHeaders sets the headers every answer of the console carries (pages, static files,
// refusals): a strict Content-Security-Policy (no inline script or style; scripts, styles and
// images from the console itself only), no framing, no sniffing, no referrer to other sites.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "same-origin")
		h.ServeHTTP(w, r)
	})
}

func (c *console) serveStatic(w http.ResponseWriter, r *http.Request) {
	// The URL carries the content's hash (?v=): a new build is a new URL.
	w.Header().Set("Cache-Control", "public, max-age=86400")
	c.static.ServeHTTP(w, r)
}

// authenticate answers 401 with a basic-auth challenge (and returns false) unless the request
// comes from a principal with a role.
func (c *console) authenticate(w http.ResponseWriter, r *http.Request) (identity.Principal, bool) {
	p, err := c.o.Authenticate(r)
	if errors.Is(err, identity.ErrBusy) {
		w.Header().Set("Retry-After", "1")
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "429 too many logins are being checked: try again", http.StatusTooManyRequests)
		return p, false
	}
	if err != nil || !p.Can(identity.RoleRead) {
		if err != nil {
			c.o.Logger.Debug("console: not authenticated", "path", r.URL.Path, "err", err)
		}
		w.Header().Set("WWW-Authenticate", `Basic realm="responder", charset="UTF-8"`)
		w.Header().Set("Cache-Control", "no-store")
		http.Error(w, "401 unauthorized: log in to responder's console", http.StatusUnauthorized)
		return p, false
	}
	p.Via = identity.ViaWeb
	return p, true
}

// canAct reports whether p may pause, resume and reset breakers.
func (c *console) canAct(p identity.Principal) bool { return p.Can(identity.RoleAdmin) }

// canDecide reports whether p may approve and deny: an admin named in approvals.approvers.web.
func (c *console) canDecide(p identity.Principal) bool { return c.canAct(p) && c.approver[p.Name] }

// view is what every page's template sees: the principal, the CSRF token of its forms, a flash
// message from the last POST, the page's own data.
type view struct {
	Title     string
	Nav       string // the current section: incidents, actions, status, audit, drills
	User      identity.Principal
	CanAct    bool
	CanDecide bool
	CSRF      string
	Flash     *flash
	Refresh   *refresh // nil: the page does not refresh itself
	CSSHash   string
	Path      string // the request's path and query, for forms that come back here
	Now       time.Time
	Data      any
}

// refresh is a page's auto-refresh: on (meta refresh every Seconds) or off, with the link that
// toggles it.
type refresh struct {
	On      bool
	Seconds int
	Toggle  string
}

// pageFunc fills v for one page and names the template to render it with, and the status code.
type pageFunc func(w http.ResponseWriter, r *http.Request, v *view) (string, int)

// page serves a GET page: authentication, the CSRF cookie, the flash message, rendering into a
// buffer first (a template error is a 500, not half a page), Cache-Control: no-store.
func (c *console) page(fn pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok := c.authenticate(w, r)
		if !ok {
			return
		}
		r = r.WithContext(identity.NewContext(r.Context(), p))
		v := &view{User: p, CanAct: c.canAct(p), CanDecide: c.canDecide(p), CSSHash: c.cssHash, Now: c.o.Now(),
			Path: r.URL.RequestURI()}
		if v.CanAct {
			v.CSRF = c.csrfToken(w, r, p)
		}
		v.Flash = c.takeFlash(w, r)
		name, code := fn(w, r, v)
		var buf bytes.Buffer
		if err := c.pages[name].Execute(&buf, v); err != nil {
			c.o.Logger.Error("console: render failed", "page", name, "err", err)
			w.Header().Set("Cache-Control", "no-store")
			http.Error(w, "500 the page could not be rendered", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_, _ = w.Write(buf.Bytes())
	}
}

// fail renders the error page with code and msg.
func (c *console) fail(v *view, code int, msg string) (string, int) {
	v.Title = http.StatusText(code)
	v.Data = msg
	return "error", code
}

// storeFail renders the error page for a store error: 404 for a missing row, else 503 (logged;
// the page says the database could not be read, not why).
func (c *console) storeFail(v *view, what string, err error) (string, int) {
	if errors.Is(err, store.ErrNotFound) {
		return c.fail(v, http.StatusNotFound, "There is no such "+what+".")
	}
	c.o.Logger.Warn("console: store read failed", "what", what, "err", err)
	return c.fail(v, http.StatusServiceUnavailable, "The "+what+" could not be read from the database; try again.")
}

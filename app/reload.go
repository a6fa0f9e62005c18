package app

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
)

// live is the configuration in force and what the App built from it for its own use. A reload
// builds a new one beside it and swaps it whole; readers take one snapshot (cur) and use it.
type live struct {
	cfg *config.Config
	// handlers are the handlers the engine runs (a reload keeps those it does not change).
	handlers *handlers.Registry
	budgets  []engine.Budget
	// tokens authenticates the API's bearer tokens (identity.go).
	tokens *identity.Tokens
	// webAuth authenticates the console's users; nil without web.users and web.auth.proxy_header.
	webAuth *identity.Web
	// webLogins is webAuth's responder_web_logins_total (webLoginsCollector serves it).
	webLogins prometheus.Collector
	// console serves /ui/ (console.go).
	console http.Handler
}

// cur returns the configuration in force and what was built from it.
func (a *App) cur() *live { return a.live.Load() }

// conf returns the configuration in force.
func (a *App) conf() *config.Config { return a.cur().cfg }

// setLive swaps in a copy of the live state changed by f.
func (a *App) setLive(f func(*live)) {
	l := *a.cur()
	f(&l)
	a.live.Store(&l)
}

// reloader tracks reload outcomes for the metrics and /api/v1/status, and serializes reloads.
type reloader struct {
	// run is held for a whole reload: two reloads never build or swap at once.
	run     sync.Mutex
	mu      sync.Mutex
	now     func() time.Time
	ok      prometheus.Gauge
	okTime  prometheus.Gauge
	lastErr string
	lastAt  time.Time
}

func newReloader(reg prometheus.Registerer, now func() time.Time) *reloader {
	r := &reloader{now: now,
		ok: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "config_last_reload_successful",
			Help: "Whether the last configuration reload succeeded (1) or kept the previous configuration (0)."}),
		okTime: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "config_last_reload_success_timestamp_seconds",
			Help: "Time of the last successful configuration reload."}),
	}
	reg.MustRegister(r.ok, r.okTime)
	return r
}

func (r *reloader) succeeded() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastAt, r.lastErr = r.now(), ""
	r.ok.Set(1)
	r.okTime.Set(float64(r.lastAt.Unix()))
}

func (r *reloader) failed(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastAt, r.lastErr = r.now(), err.Error()
	r.ok.Set(0)
}

func (r *reloader) last() apiReload {
	r.mu.Lock()
	defer r.mu.Unlock()
	return apiReload{At: r.lastAt, Successful: r.lastErr == "", Error: r.lastErr}
}

// Reload re-reads the configuration file, its *_file secrets and the rule files, and applies the
// whole configuration while responder runs: rules, probes, handlers and their settings, secrets,
// API tokens, console users, approvers, budgets and the other safety settings, the webhook's
// tokens. It is all or nothing: everything new is built and checked first, then swapped in; on
// any error the configuration in force stays whole, responder_config_last_reload_successful
// drops to 0 and /api/v1/status shows the error. A change to a key that needs a restart
// (config.Reloadable: the database, the bus, the intake limits, Slack's connection, the
// execution slots and leases) refuses the reload, naming the key. Reloads run one at a time. SIGHUP and POST /-/reload both call it.
func (a *App) Reload(ctx context.Context) error {
	_, err := a.reloadConfig(ctx)
	return err
}

// reloaded is what a successful reload changed.
type reloaded struct {
	changed []string
	rules   *rules.Set
}

// reloadConfig is Reload, answering what changed.
func (a *App) reloadConfig(ctx context.Context) (reloaded, error) {
	a.reload.run.Lock()
	defer a.reload.run.Unlock()
	old := a.cur()
	n, err := a.prepareReload(old)
	if err == nil {
		err = a.swap(old, n)
	}
	if err != nil {
		a.reload.failed(err)
		a.log.Error("reload failed; keeping the last good configuration", "err", err)
		a.auditReload(ctx, nil, err)
		return reloaded{}, err
	}
	a.reload.succeeded()
	a.log.Info("reloaded the configuration", "changed", n.changed, "rules", len(n.rules.Rules), "rule_hash", n.rules.Hash)
	a.auditReload(ctx, n.changed, nil)
	return reloaded{changed: n.changed, rules: n.rules}, nil
}

// next is a reload's new configuration and everything built from it, not in force yet.
type next struct {
	live    *live
	changed []string
	rules   *rules.Set
	engine  engine.Settings
	probes  map[string]*probeRunner
}

// prepareReload loads the configuration and builds everything a reload swaps in, without
// touching what runs. Any error refuses the reload.
func (a *App) prepareReload(old *live) (*next, error) {
	cfg, err := loadConfig(a.o)
	if err != nil {
		return nil, err
	}
	changed := old.cfg.Changes(cfg)
	if restart := config.NeedsRestart(changed); len(restart) > 0 {
		return nil, fmt.Errorf("%s (the configuration in force stays)", strings.Join(restart, "; "))
	}
	if !authConfigured(a.o, cfg) {
		return nil, errors.New("refusing to reload without authentication: " + authHelp + " (the configuration in force stays)")
	}
	hs, ruleSet, err := a.reloadHandlers(cfg, old.handlers, changed)
	if err != nil {
		return nil, err
	}
	n := &next{live: &live{cfg: cfg, handlers: hs, budgets: engineBudgets(cfg)}, changed: changed, rules: ruleSet,
		engine: a.engineSettings(cfg, hs, ruleSet)}
	if n.live.tokens, err = newTokens(cfg); err != nil {
		return nil, err
	}
	n.live.webAuth, n.live.webLogins = old.webAuth, old.webLogins
	if !reflect.DeepEqual(old.cfg.Web, cfg.Web) || !reflect.DeepEqual(old.cfg.Approvals.Approvers, cfg.Approvals.Approvers) {
		// Built again only when it changed: it remembers verified passwords.
		if n.live.webAuth, n.live.webLogins, err = a.newWebAuth(cfg); err != nil {
			return nil, err
		}
	}
	if n.live.console, err = a.newConsole(n.live); err != nil {
		return nil, err
	}
	// Last: a probe built starts its metric series (buildChangedProbes takes them back when it
	// fails).
	if n.probes, err = a.buildChangedProbes(cfg.Probes); err != nil {
		return nil, err
	}
	return n, nil
}

// swap puts a prepared reload in force: the engine first (its one check, the handler names,
// leaves everything old when it fails), then the webhook's tokens, Slack, the App's own state,
// the probes and the budget gauges. Each part swaps atomically; a running action keeps the
// handler it started with.
func (a *App) swap(old *live, n *next) error {
	if err := a.eng.Reconfigure(n.engine); err != nil {
		return err
	}
	cfg := n.live.cfg
	if err := a.webhook.SetTokens(cfg.WebhookTokens()); err != nil {
		return err // not reached: prepareReload checked them (authConfigured)
	}
	if a.slack != nil {
		a.slack.SetConfig(cfg.Slack, cfg.Safety.Paused)
		a.slack.SetDrillChannel(slackDrillChannel(cfg))
	}
	carryLogins(old.webLogins, n.live.webLogins)
	a.live.Store(n.live)
	a.probes.update(n.probes)
	a.gauges.setBudgets(old.budgets, n.live.budgets)
	a.eng.Kick() // new settings, new handlers: look at the waiting actions again
	return nil
}

// auditReload records a reload: who (the API token's name, or "signal" for SIGHUP), the keys it
// changed or why it failed. Best effort: a reload does not fail because the store is down.
func (a *App) auditReload(ctx context.Context, changed []string, err error) {
	actor := "signal"
	if p, ok := identity.FromContext(ctx); ok {
		actor = p.Name
	}
	e := store.AuditInsert{At: a.o.Now(), Kind: store.AuditReload, Actor: actor, Reason: "reloaded",
		Detail: map[string]any{"changed": changed, "rule_hash": a.eng.Rules().Hash}}
	if err != nil {
		e.Reason, e.Detail = "reload_failed", map[string]any{"error": err.Error()}
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if aerr := a.st.Audit(actx, e); aerr != nil {
		a.log.Warn("could not audit a reload", "err", aerr)
	}
}

// ReloadOnSignal reloads the configuration each time sig delivers, until ctx ends; serve passes
// it SIGHUP. A failed reload is logged and shown in the metrics and /api/v1/status.
func (a *App) ReloadOnSignal(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			_ = a.Reload(ctx)
		}
	}
}

// authHelp says what authenticates requests; responder neither starts nor reloads without it.
const authHelp = "set webhook.bearer_token(_file) and an admin API token (api.token(_file), or an api.tokens entry with role admin) in the config, or pass --web.no-auth (never in production)"

// authConfigured reports whether cfg has a webhook token and an admin API token, or
// --web.no-auth is given.
func authConfigured(o Options, cfg *config.Config) bool {
	return o.NoAuth || len(cfg.WebhookTokens()) > 0 && cfg.HasAdminToken()
}

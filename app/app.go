// Package app wires responder together: config, store, bus, webhook intake, rules, engine,
// handlers and the HTTP API. It owns the lifecycle: New opens everything (or nothing), Run serves
// until its context ends and then shuts down in order: stop intake, stop consuming, drain running
// actions within a bound, close the bus and the database pool.
package app

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/builtin"
	"github.com/responder-sre/responder/handlers/k8s"
	"github.com/responder-sre/responder/leader"
	notifyslack "github.com/responder-sre/responder/notify/slack"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/source/alertmanager"
	"github.com/responder-sre/responder/source/probe"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Options are what `responder serve` passes in (flags), plus test hooks.
type Options struct {
	ConfigFile    string
	ListenAddress string
	WebConfigFile string
	StoragePath   string
	DryRun        bool
	NoAuth        bool
	// NoAuthUnsafeAnyAddress allows NoAuth on a listen address that is not loopback.
	NoAuthUnsafeAnyAddress bool
	// NoAuthWarnInterval is how often NoAuth is logged as a warning (default 1m).
	NoAuthWarnInterval time.Duration
	// MetricsRefreshInterval is how often the database-backed gauges are read (default 10s).
	MetricsRefreshInterval time.Duration
	Version                string
	// DrainTimeout bounds how long shutdown waits for running actions (default 30s).
	DrainTimeout time.Duration
	Logger       *slog.Logger
	// Now is the clock (tests inject one).
	Now func() time.Time
	// Getenv reads RESPONDER_DATABASE_URL (default os.Getenv).
	Getenv func(string) string
}

// App is a running responder.
type App struct {
	o       Options
	log     *slog.Logger
	reg     *prometheus.Registry
	st      *store.Store
	bus     *bus.Bus
	eng     *engine.Engine
	srv     *http.Server
	ln      net.Listener
	reload  *reloader
	mux     *http.ServeMux
	elector *leader.Elector
	panics  *engine.Panics // responder_panics_total, shared by every unit that recovers
	owner   string
	slack   *notifyslack.Slack // nil without a slack section
	probes  *probeSet          // one runner per probe (reload.go)
	// drillProbes reads which probes running drills list (probe name -> run id); nil: no drills.
	// See drillsOfProbes in probes.go.
	drillProbes func(ctx context.Context) (map[string]string, error)
	// probeDrills is what every probe runner, across reloads, asks whether a drill lists it.
	probeDrills *probe.Drills
	webhook     *alertmanager.Handler
	// probeToken is the leader lease token the probes run under in the current term.
	probeToken atomic.Int64
	// live is the configuration in force and what was built from it for the App's own use (the
	// API's tokens, the console and its users, the budgets): a reload swaps it whole (reload.go).
	live atomic.Pointer[live]
	// csrfKey signs the console's forms; drawn once, so that a reload keeps them valid.
	csrfKey      []byte
	unauthorized prometheus.Counter
	dl           deadLetterMetrics
	drills       drillMetrics
	gauges       *gauges
}

// New loads the configuration and rules, opens the store (applying migrations) and the bus, and
// binds the listener. It fails without tokens unless NoAuth. On an error, whatever it opened is
// closed again.
//
// The steps, in order: check the config and the flags (checkStart), check the rules against the
// handlers without their clients (checkRules), then open the store, the bus, the probes, the
// handlers with their clients and the rules they run, the engine and its leader election, the
// metrics and the HTTP API, and bind the listener.
func New(ctx context.Context, o Options) (*App, error) {
	o.setDefaults()
	cfg, err := loadConfig(o)
	if err != nil {
		return nil, err
	}
	if err := checkStart(o, cfg); err != nil {
		return nil, err
	}
	a := &App{o: o, log: o.Logger, reg: prometheus.NewRegistry()}
	a.live.Store(&live{cfg: cfg})
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		versioncollector.NewCollector("responder"))
	if a.panics, err = engine.NewPanics(a.reg, o.Logger); err != nil {
		return nil, err
	}
	if err := checkRules(cfg, o); err != nil {
		return nil, err
	}

	ok := false
	defer func() {
		if !ok {
			a.closeAll(ctx)
		}
	}()
	if err := a.openStore(ctx); err != nil {
		return nil, err
	}
	a.drillProbes = a.drillProbesOf(a.st)
	if err := a.openBus(ctx); err != nil {
		return nil, err
	}
	if err := a.newProbes(cfg); err != nil {
		return nil, err
	}
	hs, ruleSet, err := a.newHandlers()
	if err != nil {
		return nil, err
	}
	if err := a.newEngine(hs, ruleSet); err != nil {
		return nil, err
	}
	if err := a.newHTTP(ctx); err != nil {
		return nil, err
	}
	a.ln, err = net.Listen("tcp", o.ListenAddress)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.ListenAddress, err)
	}
	a.log.Info("responder ready", "listen_address", a.ln.Addr().String(), "rules", len(ruleSet.Rules), "rule_hash", ruleSet.Hash,
		"bus", bus.RedactURL(a.bus.ClientURL()), "dry_run", a.dryRun(), "auth", !o.NoAuth, "config", cfg.File)
	ok = true
	return a, nil
}

// setDefaults fills the Options left zero.
func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.StoragePath == "" {
		o.StoragePath = "data"
	}
}

// checkStart refuses a start that could not serve safely, before anything runs (migrations,
// consumers): a bad web config, no webhook token or no admin API token (api.token or a named one)
// without NoAuth, NoAuth off loopback, no database.
func checkStart(o Options, cfg *config.Config) error {
	if o.WebConfigFile != "" {
		if err := web.Validate(o.WebConfigFile); err != nil {
			return fmt.Errorf("--web.config.file %s: %w", o.WebConfigFile, err)
		}
	}
	if !authConfigured(o, cfg) {
		return errors.New("refusing to start without authentication: " + authHelp)
	}
	if o.NoAuth {
		if err := checkNoAuthAddress(o.ListenAddress, o.NoAuthUnsafeAnyAddress); err != nil {
			return err
		}
	}
	if cfg.DatabaseURL() == "" {
		return errors.New("no database: set database.url (or database.url_file, or RESPONDER_DATABASE_URL)")
	}
	return nil
}

// checkRules checks the rules before anything starts, against the handlers without their
// clients; newHandlers loads them again against the registry that runs.
func checkRules(cfg *config.Config, o Options) error {
	hs, err := builtin.Registry(handlers.Env{Config: cfg, Version: o.Version, Logger: o.Logger})
	if err != nil {
		return err
	}
	_, err = loadRules(cfg, hs)
	return err
}

// openStore connects to PostgreSQL and applies the migrations.
func (a *App) openStore(ctx context.Context) error {
	var err error
	cfg := a.conf()
	a.st, err = store.Open(ctx, cfg.DatabaseURL(), store.Options{MaxConns: cfg.Database.MaxConns, Version: a.o.Version})
	return err
}

// openBus connects to the bus (or starts the embedded server) with the bus: section.
func (a *App) openBus(ctx context.Context) error {
	cfg := a.conf()
	var err error
	n := cfg.NATS
	var tlsOpts *bus.TLSOptions
	if n.TLS.Enabled() {
		tlsOpts = &bus.TLSOptions{CAFile: cfg.FilePath(n.TLS.CAFile), CertFile: cfg.FilePath(n.TLS.CertFile),
			KeyFile: cfg.FilePath(n.TLS.KeyFile), ServerName: n.TLS.ServerName}
	}
	var key []byte
	if k := cfg.Bus.SigningKey.Value(); k != "" {
		key = []byte(k)
	}
	a.bus, err = bus.Open(ctx, bus.Options{
		URL:             n.URL,
		User:            n.User,
		Password:        n.Password.Value(),
		Token:           n.Token.Value(),
		CredsFile:       cfg.FilePath(n.CredsFile),
		NkeySeedFile:    cfg.FilePath(n.NkeySeedFile),
		TLS:             tlsOpts,
		SigningKey:      key,
		StoreDir:        filepath.Join(a.o.StoragePath, "jetstream"),
		Stream:          cfg.Bus.Stream,
		MaxBytes:        int64(cfg.Bus.MaxBytes),
		MaxMsgs:         cfg.Bus.MaxMsgs,
		MaxAge:          cfg.Bus.MaxAge.D(),
		DuplicateWindow: cfg.Bus.DuplicateWindow.D(),
		Replicas:        cfg.Bus.Replicas,
		AckWait:         cfg.Bus.AckWait.D(),
		Logger:          a.o.Logger.With("component", "bus"),
		Registerer:      a.reg,
		OnPanic:         func() { a.panics.Count(engine.PanicBatch) },
	})
	return err
}

// newProbes builds a runner for each probe of cfg; the leader runs them (runLeaderWork).
func (a *App) newProbes(cfg *config.Config) error {
	a.probes = newProbeSet(a.log)
	a.probeDrills = a.drillsOfProbes()
	built, err := a.buildProbes(cfg.Probes)
	if err != nil {
		return err
	}
	a.probes.update(built)
	return nil
}

// probeOptions are what every probe runner shares: results published through the bus and
// states saved under the leader's fencing token.
func (a *App) probeOptions() probe.Options {
	return probe.Options{Publish: a.publishProbes, State: fencedProbeState{a},
		Now: a.o.Now, Logger: a.o.Logger.With("component", "probe"), Registerer: a.reg,
		OnPanic: func() { a.panics.Count(engine.PanicProbe) }, Drills: a.probeDrills}
}

// newSlack opens the Slack integration when the config has a slack section; it also posts the
// incident messages.
func (a *App) newSlack() error {
	cfg, o := a.conf(), a.o
	if !cfg.Slack.Configured() {
		return nil
	}
	var err error
	a.slack, err = notifyslack.New(cfg.Slack, notifyslack.Options{Store: a.st, Kick: a.kick, Now: o.Now,
		Approver: engineApprover{a}, Logger: o.Logger.With("component", "slack"), Registerer: a.reg,
		Budgets: a.slackBudgets, ConfigPaused: cfg.Safety.Paused, RuleChannel: a.ruleSlackChannel,
		DrillChannel: slackDrillChannel(cfg)})
	return err
}

// slackDrillChannel is where Slack posts the incident messages of drills: drills.page when it
// names a Slack channel, else "" (where the messages of their rules go).
func slackDrillChannel(cfg *config.Config) string {
	if config.IsSlackChannel(cfg.Drills.Page) {
		return cfg.Drills.Page
	}
	return ""
}

// newClients returns the connections the handlers of cfg act through (handlers.Env.Clients):
// the store (page.teams and page.email read the incident's actions), Slack and Kubernetes, each
// when configured. The Kubernetes client is built from cfg each time (a reload reads the
// kubeconfig again).
func (a *App) newClients(cfg *config.Config) ([]any, error) {
	var clients []any
	if a.st != nil {
		clients = append(clients, a.st)
	}
	if a.slack != nil {
		clients = append(clients, a.slack)
	}
	if cfg.Handlers.Kubernetes.Enabled() {
		kube, _, err := k8s.NewClient(cfg.KubeconfigPath())
		if err != nil {
			return clients, fmt.Errorf("handlers.kubernetes: %w", err)
		}
		clients = append(clients, kube)
	}
	return clients, nil
}

// buildHandlers builds the handler registry of cfg, with its clients, and loads cfg's rules
// against it.
func (a *App) buildHandlers(cfg *config.Config) (*handlers.Registry, *rules.Set, error) {
	hs, err := a.newRegistry(cfg)
	if err != nil {
		return nil, nil, err
	}
	ruleSet, err := loadRules(cfg, hs)
	if err != nil {
		return nil, nil, err
	}
	return hs, ruleSet, nil
}

// newRegistry builds the handler registry of cfg with its clients.
func (a *App) newRegistry(cfg *config.Config) (*handlers.Registry, error) {
	clients, err := a.newClients(cfg)
	if err != nil {
		return nil, err
	}
	return builtin.Registry(handlers.Env{Config: cfg, Version: a.o.Version, Logger: a.o.Logger, Clients: clients})
}

// newHandlers opens Slack, builds the handler registry that runs and loads the rules against
// it; the reloader starts from this rule set.
func (a *App) newHandlers() (*handlers.Registry, *rules.Set, error) {
	if err := a.newSlack(); err != nil {
		return nil, nil, err
	}
	hs, ruleSet, err := a.buildHandlers(a.conf())
	if err != nil {
		return nil, nil, err
	}
	a.reload = newReloader(a.reg, a.o.Now)
	a.reload.succeeded()
	return hs, ruleSet, nil
}

// newEngine builds the leader elector and the engine with the safety: and approvals: sections.
func (a *App) newEngine(hs *handlers.Registry, ruleSet *rules.Set) error {
	cfg, o := a.conf(), a.o
	a.owner = owner()
	// Singleton work (the probes, the Slack incident messages) runs only on the leader; every replica
	// campaigns.
	var err error
	if a.elector, err = leader.New(a.st, leaseName, a.owner, leader.Options{Now: o.Now,
		Logger: o.Logger.With("component", "leader"), Registerer: a.reg}); err != nil {
		return err
	}
	budgets := engineBudgets(cfg)
	a.setLive(func(l *live) { l.budgets, l.handlers = budgets, hs })
	s := a.engineSettings(cfg, hs, ruleSet)
	a.eng, err = engine.New(engine.Options{
		StormMaxTargets: s.StormMaxTargets, StormWindow: s.StormWindow, StormMaxWorkloadFraction: s.StormMaxWorkloadFraction,
		Budgets: s.Budgets, DrillBudget: s.DrillBudget, DrillPage: s.DrillPage, BreakerFailures: s.BreakerFailures, BreakerOpenFor: s.BreakerOpenFor,
		Store: a.st, Handlers: hs, Rules: ruleSet, Owner: a.owner,
		DryRun: s.DryRun, Paused: s.Paused, ApprovalTTL: s.ApprovalTTL, MaxAlertAge: s.MaxAlertAge, MaxConcurrent: cfg.Safety.MaxConcurrentActions,
		ActionTimeout: s.ActionTimeout, Lease: cfg.Safety.LeaseDuration.D(),
		MaxParamsBytes: maxParamsBytes(cfg.Limits.MaxParamsBytes),
		Now:            o.Now, Logger: o.Logger.With("component", "engine"), Registerer: a.reg, Panics: a.panics,
	})
	return err
}

// engineBudgets are cfg's safety.budgets as the engine counts them.
func engineBudgets(cfg *config.Config) []engine.Budget {
	var budgets []engine.Budget
	for _, b := range cfg.Safety.Budgets {
		budgets = append(budgets, engine.Budget{Name: b.Name, Match: b.Match, Per: b.Per, Max: b.Max, Window: b.Window.D()})
	}
	return budgets
}

// drillBudget is cfg's drills.budget as the engine counts it (drills, "*", global; unset, 10 per
// 1h).
func drillBudget(cfg *config.Config) engine.Budget {
	return engine.DrillBudgetOf(cfg.Drills.Budget.Max, cfg.Drills.Budget.Window.D())
}

// engineSettings are what the engine takes from cfg and a reload changes (engine.Settings).
func (a *App) engineSettings(cfg *config.Config, hs *handlers.Registry, ruleSet *rules.Set) engine.Settings {
	sf := cfg.Safety
	return engine.Settings{Handlers: hs, Rules: ruleSet, DryRun: a.o.DryRun || sf.DryRun, Paused: sf.Paused,
		MaxAlertAge: sf.MaxAlertAge.D(), ActionTimeout: sf.ActionTimeout.D(), ApprovalTTL: cfg.Approvals.TTL.D(),
		Budgets: engineBudgets(cfg), StormMaxTargets: sf.StormGuard.MaxTargets, StormWindow: sf.StormGuard.Window.D(),
		StormMaxWorkloadFraction: sf.StormGuard.MaxWorkloadFraction, BreakerFailures: sf.Breaker.Failures,
		BreakerOpenFor: sf.Breaker.OpenFor.D(), DrillBudget: drillBudget(cfg), DrillPage: cfg.Drills.Page}
}

// newHTTP registers the API's metrics and the database-backed gauges (read once now, then in
// the background: gauges.go) and builds the HTTP handler.
func (a *App) newHTTP(ctx context.Context) error {
	a.unauthorized = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "responder", Name: "api_unauthorized_total",
		Help: "API and reload requests refused for a missing, wrong or read-only token."})
	a.reg.MustRegister(a.unauthorized)
	// The drill metrics are read from the store with the gauges (and set when a run finishes).
	a.drills = newDrillMetrics(a.reg)
	a.gauges = newGauges(a)
	a.reg.MustRegister(a.gauges.collectors()...)
	if err := a.gauges.refresh(ctx); err != nil {
		a.log.Warn("could not read the database-backed metrics yet", "err", err)
	}
	a.registerDeadLetterMetrics(ctx)
	if err := a.newIdentity(); err != nil {
		return err
	}
	a.csrfKey = make([]byte, 32)
	if _, err := rand.Read(a.csrfKey); err != nil {
		return fmt.Errorf("console: CSRF key: %w", err)
	}
	return a.buildHTTP()
}

// dryRun reports whether this replica only dry-runs: --dry-run or safety.dry_run.
func (a *App) dryRun() bool { return a.o.DryRun || a.conf().Safety.DryRun }

func loadConfig(o Options) (*config.Config, error) {
	if o.ConfigFile == "" {
		return config.Default(), nil
	}
	return config.Load(o.ConfigFile, config.WithGetenv(o.Getenv))
}

// leaseName is the leader lease every replica campaigns for; singleton work runs under it.
const leaseName = "responder"

// publishProbes publishes probe results stamped with the leader's token (see fence).
func (a *App) publishProbes(ctx context.Context, as []alert.Alert) error {
	tok := a.probeToken.Load()
	for i := range as {
		as[i].Fence = tok
	}
	return a.publishWithinLimits(ctx, as)
}

// fencedProbeState saves probe state only while the lease token the probes run under is current.
type fencedProbeState struct{ a *App }

func (f fencedProbeState) LoadProbeStates(ctx context.Context) (map[string][]byte, error) {
	return f.a.st.LoadProbeStates(ctx)
}

func (f fencedProbeState) SaveProbeState(ctx context.Context, name string, state []byte) error {
	return f.a.st.InTx(ctx, func(tx pgx.Tx) error {
		if err := f.a.st.CheckFence(ctx, tx, leaseName, f.a.probeToken.Load(), f.a.o.Now()); err != nil {
			return err
		}
		return f.a.st.SaveProbeStateTx(ctx, tx, name, state)
	})
}

// ruleSlackChannel is a rule's slack_channel in the rules running now.
func (a *App) ruleSlackChannel(rule string) string {
	if a.eng == nil {
		return ""
	}
	if r := a.eng.Rules().Rule(rule); r != nil {
		return r.SlackChannel
	}
	return ""
}

// kick wakes the engine (after a decision taken in Slack).
func (a *App) kick() {
	if a.eng != nil {
		a.eng.Kick()
	}
}

// slackBudgets is what `/responder status` shows of the budgets.
func (a *App) slackBudgets(ctx context.Context) ([]notifyslack.BudgetStatus, error) {
	var out []notifyslack.BudgetStatus
	for _, b := range a.cur().budgets {
		used, err := a.st.BudgetMostUsed(ctx, b.Name, b.Window, a.o.Now())
		if err != nil {
			return nil, err
		}
		out = append(out, notifyslack.BudgetStatus{Name: b.Name, Max: b.Max, MostUsed: used, Window: b.Window})
	}
	return out, nil
}

func loadRules(cfg *config.Config, hs *handlers.Registry) (*rules.Set, error) {
	paths, err := cfg.RuleFilePaths()
	if err != nil {
		return nil, err
	}
	return rules.LoadFiles(paths, hs)
}

func owner() string {
	host, _ := os.Hostname()
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

// Addr is the address the HTTP listener is bound to.
func (a *App) Addr() string { return a.ln.Addr().String() }

// Engine exposes the engine (tests, benchmarks).
func (a *App) Engine() *engine.Engine { return a.eng }

// Store exposes the store (tests, benchmarks).
func (a *App) Store() *store.Store { return a.st }

// Registry is the App's private Prometheus registry.
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Run serves HTTP, consumes the bus and runs the engine until ctx is done (or a fatal error),
// then shuts down in order: intake, consumers, engine (draining within DrainTimeout), the rest.
func (a *App) Run(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	// The engine and the consumers outlive ctx: they are stopped one after the other below.
	engCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	consumeCtx, stopConsume := context.WithCancel(context.WithoutCancel(ctx))
	defer stopConsume()

	a.serveHTTP(&wg, errc)
	a.consume(consumeCtx, &wg, errc)
	wg.Go(func() { _ = a.eng.Run(engCtx, a.o.DrainTimeout) })
	a.runBackground(runCtx, &wg)
	a.runLeaderWork(runCtx, &wg)

	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
		a.log.Error("stopping after a fatal error", "err", err)
	}
	cancel()
	a.log.Info("shutting down: stopping intake")
	shCtx, shCancel := context.WithTimeout(context.WithoutCancel(ctx), a.o.DrainTimeout+10*time.Second)
	defer shCancel()
	_ = a.srv.Shutdown(shCtx) // stop intake first: no new 200s
	stopConsume()             // no new batches; a batch in flight finishes or is redelivered
	stopEngine()              // stop claiming; running actions drain within DrainTimeout
	wg.Wait()
	if a.slack != nil {
		a.slack.Wait() // answers to Slack still in flight
	}
	a.closeAll(shCtx)
	a.log.Info("shutdown complete")
	return err
}

// serveHTTP serves the listener (TLS and basic auth from --web.config.file) until Shutdown; a
// failure is fatal (errc).
func (a *App) serveHTTP(wg *sync.WaitGroup, errc chan<- error) {
	wg.Go(func() {
		lf := []string{a.o.ListenAddress}
		noSystemd := false
		err := web.Serve(a.ln, a.srv, &web.FlagConfig{WebListenAddresses: &lf, WebSystemdSocket: &noSystemd, WebConfigFile: &a.o.WebConfigFile}, a.log)
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	})
}

// consume runs bus.consumers consumers until ctx ends; each takes its own batches, so their
// transactions overlap. A consumer that stops on its own is fatal (errc).
func (a *App) consume(ctx context.Context, wg *sync.WaitGroup, errc chan<- error) {
	for range max(1, a.conf().Bus.Consumers) {
		wg.Go(func() {
			if err := a.bus.Consume(ctx, processor{a}); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("bus consumer: %w", err)
			}
		})
	}
}

// runBackground runs every replica's periodic work until ctx ends: retention, the no-auth
// warning, the database-backed gauges, and the leader election.
func (a *App) runBackground(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { a.retention(ctx) })
	wg.Go(func() { a.warnNoAuth(ctx) })
	wg.Go(func() { a.gauges.run(ctx) })
	wg.Go(func() {
		if err := a.elector.Run(ctx); err != nil {
			a.log.Warn("leader election stopped", "err", err)
		}
	})
}

// runLeaderWork runs the singleton work while this replica leads, until ctx ends: the probes
// (what they publish and save is fenced by the lease token), the scheduled drills (one run per
// slot, keyed in the store) and the Slack incident messages (one message per incident). Slack's Socket Mode runs on every replica: Slack hands each event
// to one connection.
func (a *App) runLeaderWork(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() {
		a.elector.RunWhileLeading(ctx, time.Second, func(ctx context.Context, token int64) error {
			a.probeToken.Store(token)
			return a.probes.run(ctx)
		}, func(err error) { a.log.Warn("probes stopped; restarting", "err", err) })
	})
	wg.Go(func() {
		a.elector.RunWhileLeading(ctx, time.Second, func(ctx context.Context, _ int64) error {
			return a.runDrillSchedule(ctx)
		}, func(err error) { a.log.Warn("drill schedule stopped; restarting", "err", err) })
	})
	if a.slack == nil {
		return
	}
	wg.Go(func() {
		// A panic in a sync pass ends this run (counted, logged); the next poll starts it again.
		syncRun := func(ctx context.Context, _ int64) error {
			return a.panics.Call(engine.PanicSlackSync, func() error { return a.slack.Run(ctx) })
		}
		a.elector.RunWhileLeading(ctx, time.Second, syncRun,
			func(err error) { a.log.Warn("slack sync stopped; restarting", "err", err) })
	})
	if a.conf().Slack.SocketMode {
		wg.Go(func() { a.runSocketMode(ctx) })
	}
}

// runSocketMode runs Slack's Socket Mode until ctx ends. A panic while handling an event (a
// command or a click: what users send) ends that run, counted and logged, and it starts again.
func (a *App) runSocketMode(ctx context.Context) {
	for {
		err := a.panics.Call(engine.PanicSlackSocket, func() error { return a.slack.RunSocketMode(ctx) })
		var pe *engine.PanicError
		if !errors.As(err, &pe) {
			if err != nil && ctx.Err() == nil {
				a.log.Error("slack socket mode stopped", "err", err)
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

func (a *App) closeAll(ctx context.Context) {
	if a.bus != nil {
		if err := a.bus.Close(ctx); err != nil {
			a.log.Warn("closing bus", "err", err)
		}
	}
	if a.st != nil {
		a.st.Close()
	}
	if a.ln != nil {
		_ = a.ln.Close()
	}
}

// retention runs a retention pass at start and then hourly (none while safety.retention is 0:
// a reload may change it).
func (a *App) retention(ctx context.Context) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if err := a.Retain(ctx); err != nil && ctx.Err() == nil {
			a.log.Warn("retention pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// processor adapts the engine to the bus: one fetch = one transaction.
type processor struct{ a *App }

func (p processor) Process(ctx context.Context, msgs []bus.Message) error {
	n := 0
	for _, m := range msgs {
		n += len(m.Alerts)
	}
	alerts := make([]alert.Alert, 0, n)
	for _, m := range msgs {
		alerts = append(alerts, m.Alerts...)
	}
	alerts, err := p.a.fence(ctx, alerts)
	if err != nil {
		return err // transient: the store is down
	}
	err = p.a.eng.Process(ctx, alerts)
	if err != nil && !store.IsTransient(err) {
		return bus.Permanent(err)
	}
	return err
}

// probeFence names the lease whose tokens fence the probes' results (the leader lease).
const probeFence = "probes"

// fence drops the alerts a deposed leader produced: a token lower than one already accepted (see
// store.AcceptFence). Tokens are checked in ascending order, so a batch holding a leader's backlog
// and then its successor's first results keeps both.
func (a *App) fence(ctx context.Context, alerts []alert.Alert) ([]alert.Alert, error) {
	var tokens []int64
	for _, al := range alerts {
		if al.Fence > 0 && !slices.Contains(tokens, al.Fence) {
			tokens = append(tokens, al.Fence)
		}
	}
	if len(tokens) == 0 {
		return alerts, nil
	}
	slices.Sort(tokens)
	stale := map[int64]bool{}
	for _, tok := range tokens {
		ok, err := a.st.AcceptFence(ctx, probeFence, tok)
		if err != nil {
			return nil, err
		}
		stale[tok] = !ok
	}
	kept := alerts[:0:0]
	for _, al := range alerts {
		if al.Fence > 0 && stale[al.Fence] {
			a.log.Warn("dropped a result of a deposed leader", "source", al.Source, "name", al.Name, "status", al.Status, "fence", al.Fence)
			if err := a.st.Audit(ctx, store.AuditInsert{At: a.o.Now(), Kind: store.AuditAlertRejected, Actor: al.Source,
				Reason: string(vocab.ReasonStaleLeader), Detail: map[string]any{"name": al.Name, "labels": al.Labels, "status": al.Status, "fence": al.Fence}}); err != nil {
				return nil, err
			}
			continue
		}
		kept = append(kept, al)
	}
	return kept, nil
}

func (p processor) DeadLetter(ctx context.Context, msgID string, data []byte, reason string) error {
	return p.a.st.InsertDeadLetter(ctx, msgID, reason, data, p.a.o.Now())
}

// maxParamsBytes maps limits.max_params_bytes (0 = no bound) to engine.Options.MaxParamsBytes
// (where 0 means the default).
func maxParamsBytes(b config.Bytes) int {
	if b <= 0 {
		return math.MaxInt
	}
	return int(b)
}

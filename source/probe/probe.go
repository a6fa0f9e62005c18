package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
)

// DefaultHeartbeat is how often a firing probe re-publishes its alert when Options.Heartbeat is 0.
const DefaultHeartbeat = 5 * time.Minute

// maxPending bounds the alerts a probe keeps while Publish fails (oldest dropped first).
const maxPending = 64

// Label names the probe sets.
const (
	LabelKind     = "probe_kind"
	LabelInstance = "instance"
	LabelRole     = "role"
	// SummaryAnnotation says why the probe fails (or "recovered").
	SummaryAnnotation = "summary"
)

// StateStore persists each probe's State so a new leader continues the episodes of the old one.
// A state is an opaque JSON document; *store.Store implements it.
type StateStore interface {
	// LoadProbeStates returns the saved state of every probe by name.
	LoadProbeStates(ctx context.Context) (map[string][]byte, error)
	// SaveProbeState replaces the saved state of probe name.
	SaveProbeState(ctx context.Context, name string, state []byte) error
}

// Options configure a Runner.
type Options struct {
	// Publish makes alerts durable (e.g. on the bus) and returns only once they are. On error the
	// alerts stay pending and are retried, in order, at the probe's next run. Nil discards them
	// (the alerts are still returned in Result.Alerts).
	Publish func(ctx context.Context, as []alert.Alert) error
	// State persists probe states; nil keeps them in memory only.
	State StateStore
	// Heartbeat is how often a firing probe re-publishes its alert (default DefaultHeartbeat).
	Heartbeat  time.Duration
	Now        func() time.Time // clock for episodes and alert times (default time.Now)
	Logger     *slog.Logger
	Registerer prometheus.Registerer // responder_probe_success and responder_probe_duration_seconds
	// OnPanic, when set, is called after a panic in one run of a probe was recovered (and logged
	// with its stack); the App counts it in responder_panics_total{kind="probe"}.
	OnPanic func()
	// Drills, when set, marks the failing episodes that start while a running drill lists their
	// probe: every alert of such an episode (its firing, heartbeats and resolve) carries the
	// label alert.DrillLabel with the drill's run id. Nil: no episode is a drill's. Share one
	// Drills between the Runners of a process.
	Drills *Drills
}

// Measurement is what one check yields.
type Measurement struct {
	// Value is the measured value; NaN when the check produced none.
	Value float64
	// Err is why the check failed; nil when it succeeded.
	Err error
	// Labels are target labels the check learnt (a postgres probe's role).
	Labels map[string]string
	// Duration is how long the check took.
	Duration time.Duration
}

// Result is the outcome of one run of a probe.
type Result struct {
	Probe, Kind string
	// Success is false when the check failed or firing_when held.
	Success bool
	// Value is the measured value (NaN when none).
	Value float64
	// Reason says why the run failed ("" on success).
	Reason   string
	Duration time.Duration
	// Labels are the labels of an alert this run would start: the probe's, probe_kind, instance
	// and what the check learnt (and alert.DrillLabel when this run starts a drill's episode).
	Labels map[string]string
	// Firing is the probe's alert state after the run.
	Firing bool
	// Alerts are the alerts this run emitted (a state change or a heartbeat); they are published,
	// or pending when the returned error says Publish failed.
	Alerts []alert.Alert
}

// State is the persisted state of one probe.
type State struct {
	// Firing is true from the run that reached failures_to_fire to the one that reached
	// successes_to_resolve.
	Firing bool `json:"firing"`
	// EpisodeStart is the first failure of the current failing streak (the alert's startsAt).
	EpisodeStart time.Time `json:"episode_start,omitzero"`
	// Labels are the labels of the current episode's alert, fixed at its first failure
	// (alert.DrillLabel among them when a drill owns the episode).
	Labels map[string]string `json:"labels,omitempty"`
	// Failures counts consecutive failures while not firing.
	Failures int `json:"failures,omitempty"`
	// Successes counts consecutive successes while firing; RecoveringSince is the first of them.
	Successes       int       `json:"successes,omitempty"`
	RecoveringSince time.Time `json:"recovering_since,omitzero"`
	// Observed are the labels the last successful check learnt (postgres role); a failure
	// starting an episode uses them.
	Observed map[string]string `json:"observed,omitempty"`
	// LastEmitted is when the last firing alert was emitted (for the heartbeat).
	LastEmitted time.Time `json:"last_emitted,omitzero"`
	// Pending are alerts emitted but not yet published.
	Pending []alert.Alert `json:"pending,omitempty"`
}

// checker measures one target.
type checker interface {
	check(ctx context.Context) Measurement
	// instance is the target as the instance label shows it (no credentials).
	instance() string
}

type probe struct {
	cfg        config.ProbeConfig
	kind       string
	labels     map[string]string // configured + alertname + probe_kind + instance
	firingWhen *vm.Program       // nil when unset
	check      checker

	mu    sync.Mutex // one run at a time; guards state and saved
	state State
	saved []byte // the state as last saved (nil: never)
}

// Runner runs a set of probes.
type Runner struct {
	o      Options
	log    *slog.Logger
	probes []*probe
	byName map[string]*probe
	m      *metrics

	loadMu sync.Mutex
	loaded bool
}

type firingEnv struct {
	Value float64 `expr:"value"`
}

// New builds a Runner for cfgs, which must have passed config validation (defaults filled).
func New(cfgs []config.ProbeConfig, o Options) (*Runner, error) {
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultHeartbeat
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(o.Registerer)
	if err != nil {
		return nil, err
	}
	r := &Runner{o: o, log: o.Logger, byName: map[string]*probe{}, m: m}
	for _, c := range cfgs {
		p, err := newProbe(c)
		if err != nil {
			return nil, fmt.Errorf("probe %q: %w", c.Name, err)
		}
		if _, dup := r.byName[c.Name]; dup {
			return nil, fmt.Errorf("probe %q is defined twice", c.Name)
		}
		r.probes = append(r.probes, p)
		r.byName[c.Name] = p
		m.init(p.cfg.Name, p.kind)
	}
	return r, nil
}

func newProbe(c config.ProbeConfig) (*probe, error) {
	kind := c.Kind()
	if kind == "" {
		return nil, errors.New("want exactly one kind")
	}
	if c.Interval <= 0 {
		c.Interval = config.Duration(config.DefaultProbeInterval)
	}
	if c.Timeout <= 0 {
		c.Timeout = config.Duration(min(config.DefaultProbeTimeout, c.Interval.D()))
	}
	c.FailuresToFire = max(c.FailuresToFire, 1)
	c.SuccessesToResolve = max(c.SuccessesToResolve, 1)
	p := &probe{cfg: c, kind: kind}
	if c.FiringWhen != "" {
		prog, err := expr.Compile(c.FiringWhen, expr.Env(firingEnv{}), expr.AsBool())
		if err != nil {
			return nil, fmt.Errorf("firing_when: %w", err)
		}
		p.firingWhen = prog
	}
	ch, err := newChecker(c)
	if err != nil {
		return nil, err
	}
	p.check = ch
	p.saved, _ = json.Marshal(p.state) // an absent row is the zero state: no need to write it
	p.labels = map[string]string{LabelInstance: ch.instance()}
	for k, v := range c.Labels {
		p.labels[k] = v // a configured instance wins
	}
	p.labels[alert.NameLabel] = c.Name
	p.labels[LabelKind] = kind
	return p, nil
}

func newChecker(c config.ProbeConfig) (checker, error) {
	switch {
	case c.HTTP != nil:
		return newHTTPCheck(c.HTTP)
	case c.TCP != nil:
		return tcpCheck{addr: c.TCP.Address}, nil
	case c.Postgres != nil:
		return newPostgresCheck(c.Postgres)
	case c.Redis != nil:
		return newRedisCheck(c.Redis), nil
	case c.Disk != nil:
		return diskCheck{path: c.Disk.Path}, nil
	case c.TLS != nil:
		return newTLSCheck(c.TLS)
	case c.Prometheus != nil:
		return newPrometheusCheck(c.Prometheus)
	case c.Backup != nil:
		return newBackupCheck(c.Backup)
	}
	return nil, errors.New("want exactly one kind")
}

// Names returns the configured probe names in config order.
func (r *Runner) Names() []string {
	out := make([]string, len(r.probes))
	for i, p := range r.probes {
		out[i] = p.cfg.Name
	}
	return out
}

// Run loads the saved states (retrying while the store fails), then runs every probe at once and
// then on its interval until ctx ends. It returns nil when ctx ends. Run may be called again
// (leadership regained): it reloads the states, which another leader may have advanced meanwhile.
func (r *Runner) Run(ctx context.Context) error {
	r.loadMu.Lock()
	r.loaded = false
	r.loadMu.Unlock()
	if _, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := r.load(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Warn("loading probe states failed; retrying", "err", err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(backoff.NewExponentialBackOff()), backoff.WithMaxElapsedTime(0)); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	var wg sync.WaitGroup
	for _, p := range r.probes {
		wg.Go(func() {
			t := time.NewTicker(p.cfg.Interval.D())
			defer t.Stop()
			for {
				if _, err := r.safeRun(ctx, p); err != nil && ctx.Err() == nil {
					r.log.Warn("probe run incomplete", "probe", p.cfg.Name, "err", err)
				}
				select {
				case <-ctx.Done():
					return
				case <-t.C:
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// RunOnce runs probe name once: measure, update its state, publish. The error reports a state
// that could not be loaded or saved or alerts that could not be published (they stay pending);
// Result is valid whenever the probe exists.
func (r *Runner) RunOnce(ctx context.Context, name string) (Result, error) {
	p, ok := r.byName[name]
	if !ok {
		return Result{}, fmt.Errorf("no probe named %q", name)
	}
	if err := r.load(ctx); err != nil {
		return Result{}, err
	}
	return r.run(ctx, p)
}

// Feed is RunOnce with a measurement made elsewhere (rule unit tests, replays): firing_when,
// hysteresis, state and publishing apply as if the probe had measured m at Options.Now.
func (r *Runner) Feed(ctx context.Context, name string, m Measurement) (Result, error) {
	p, ok := r.byName[name]
	if !ok {
		return Result{}, fmt.Errorf("no probe named %q", name)
	}
	if err := r.load(ctx); err != nil {
		return Result{}, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return r.apply(ctx, p, m)
}

// State returns a copy of probe name's current state.
func (r *Runner) State(name string) (State, bool) {
	p, ok := r.byName[name]
	if !ok {
		return State{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	var s State
	b, _ := json.Marshal(p.state)
	_ = json.Unmarshal(b, &s)
	return s, true
}

// load reads the saved states once per Runner.
func (r *Runner) load(ctx context.Context) error {
	r.loadMu.Lock()
	defer r.loadMu.Unlock()
	if r.loaded || r.o.State == nil {
		r.loaded = true
		return nil
	}
	saved, err := r.o.State.LoadProbeStates(ctx)
	if err != nil {
		return fmt.Errorf("load probe states: %w", err)
	}
	for _, p := range r.probes {
		var s State
		b, ok := saved[p.cfg.Name]
		if ok {
			if err := json.Unmarshal(b, &s); err != nil {
				// A state this version cannot read: start afresh rather than never probing.
				r.log.Error("ignoring unreadable probe state", "probe", p.cfg.Name, "err", err)
				s, ok = State{}, false
			}
		}
		if !ok {
			b, _ = json.Marshal(s)
		}
		p.mu.Lock()
		p.state, p.saved = s, b
		p.mu.Unlock()
	}
	r.loaded = true
	return nil
}

func (r *Runner) run(ctx context.Context, p *probe) (Result, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	cctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout.D())
	start := time.Now()
	m := p.check.check(cctx)
	cancel()
	if m.Duration == 0 {
		m.Duration = time.Since(start)
	}
	if m.Err != nil && ctx.Err() != nil {
		// Cancelled from outside (shutdown, lost leadership): not a measurement of the target.
		return Result{Probe: p.cfg.Name, Kind: p.kind, Value: math.NaN()}, ctx.Err()
	}
	return r.apply(ctx, p, m)
}

// apply runs one measurement through firing_when, the state machine, the store and Publish.
// p.mu is held.
func (r *Runner) apply(ctx context.Context, p *probe, m Measurement) (Result, error) {
	now := r.o.Now()
	res := Result{Probe: p.cfg.Name, Kind: p.kind, Value: m.Value, Duration: m.Duration, Success: true}
	switch {
	case m.Err != nil:
		res.Success, res.Reason = false, m.Err.Error()
	case p.firingWhen != nil:
		out, err := expr.Run(p.firingWhen, firingEnv{Value: m.Value})
		switch {
		case err != nil:
			res.Success, res.Reason = false, "firing_when: "+err.Error()
		case out == true:
			res.Success, res.Reason = false, fmt.Sprintf("firing_when %s holds for value %g", p.cfg.FiringWhen, m.Value)
		}
	}
	r.m.observe(p.cfg.Name, p.kind, res.Success, m.Duration)
	res.Labels = p.alertLabels(p.state.Observed, m.Labels)
	if !res.Success && !p.state.Firing && p.state.Failures == 0 {
		// This failure starts an episode: a drill listing the probe now owns all of it. The label
		// is fixed with the episode's labels (and saved with them), so its firing and its resolve
		// have one fingerprint, whichever leader sends them.
		if run := r.o.Drills.RunID(ctx, p.cfg.Name); run != "" {
			res.Labels[alert.DrillLabel] = run
		}
	}

	res.Alerts = p.step(now, res, m, r.o.Heartbeat)
	res.Firing = p.state.Firing
	for _, a := range res.Alerts {
		r.log.Info("probe alert", "probe", p.cfg.Name, "status", a.Status, "starts_at", a.StartsAt, "reason", res.Reason, "drill", a.Drill())
	}
	if len(p.state.Pending) > maxPending {
		drop := len(p.state.Pending) - maxPending
		r.log.Error("dropping unpublished probe alerts", "probe", p.cfg.Name, "dropped", drop)
		p.state.Pending = p.state.Pending[drop:]
	}
	return res, r.flush(ctx, p)
}

// flush saves the state when it changed and publishes pending alerts. The state is saved before
// publishing, so a crash between the two re-publishes (harmless) instead of forgetting; a state
// that cannot be saved is not published (a deposed leader's save is refused by its fencing token,
// and it must not publish either): the alerts stay pending for the next run.
func (r *Runner) flush(ctx context.Context, p *probe) error {
	if err := r.save(ctx, p); err != nil {
		return err
	}
	var errs []error
	if len(p.state.Pending) > 0 {
		var err error
		if r.o.Publish != nil {
			err = r.o.Publish(ctx, p.state.Pending)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("publish %d probe alerts: %w", len(p.state.Pending), err))
		} else {
			p.state.Pending = nil
			if err := r.save(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

func (r *Runner) save(ctx context.Context, p *probe) error {
	if r.o.State == nil {
		return nil
	}
	b, err := json.Marshal(p.state)
	if err != nil {
		return fmt.Errorf("encode probe state: %w", err)
	}
	if string(b) == string(p.saved) {
		return nil
	}
	if err := r.o.State.SaveProbeState(ctx, p.cfg.Name, b); err != nil {
		return fmt.Errorf("save probe state: %w", err)
	}
	p.saved = b
	return nil
}

// alertLabels are the labels of an alert started now.
func (p *probe) alertLabels(observed, learnt map[string]string) map[string]string {
	out := make(map[string]string, len(p.labels)+len(observed)+len(learnt))
	for k, v := range p.labels {
		out[k] = v
	}
	for k, v := range observed {
		out[k] = v
	}
	for k, v := range learnt {
		out[k] = v
	}
	return out
}

// step advances the state machine by one run at now and returns the alerts it emitted (also
// appended to the pending ones).
func (p *probe) step(now time.Time, res Result, m Measurement, heartbeat time.Duration) []alert.Alert {
	s := &p.state
	var out []alert.Alert
	emit := func(st alert.Status, summary string, endsAt time.Time) {
		a := alert.Alert{
			Source:      alert.SourceProbe,
			Status:      st,
			Labels:      clone(s.Labels),
			Annotations: map[string]string{SummaryAnnotation: summary},
			StartsAt:    s.EpisodeStart,
			EndsAt:      endsAt,
			ReceivedAt:  now,
		}
		if !math.IsNaN(m.Value) && !math.IsInf(m.Value, 0) {
			v := m.Value
			a.Value = &v
		}
		if err := a.Validate(); err != nil {
			return // labels are validated at load; nothing sensible to publish
		}
		if st == alert.StatusFiring {
			s.LastEmitted = now
			// A firing alert of the same episode still pending is superseded by this one.
			if n := len(s.Pending); n > 0 && s.Pending[n-1].ID() == a.ID() {
				s.Pending = s.Pending[:n-1]
			}
		}
		s.Pending = append(s.Pending, a)
		out = append(out, a)
	}
	if !res.Success {
		s.Successes, s.RecoveringSince = 0, time.Time{}
		if !s.Firing {
			s.Failures++
			if s.Failures == 1 {
				s.EpisodeStart, s.Labels = now, res.Labels
			}
			if s.Failures >= p.cfg.FailuresToFire {
				s.Firing, s.Failures = true, 0
				emit(alert.StatusFiring, res.Reason, time.Time{})
			}
		} else if now.Sub(s.LastEmitted) >= heartbeat {
			emit(alert.StatusFiring, res.Reason, time.Time{})
		}
		return out
	}
	if len(m.Labels) > 0 {
		s.Observed = clone(m.Labels)
	}
	if !s.Firing {
		s.Failures, s.EpisodeStart, s.Labels = 0, time.Time{}, nil
		return out
	}
	s.Successes++
	if s.Successes == 1 {
		s.RecoveringSince = now
	}
	if s.Successes >= p.cfg.SuccessesToResolve {
		emit(alert.StatusResolved, "recovered", s.RecoveringSince)
		pending := s.Pending
		*s = State{Observed: s.Observed, Pending: pending}
		return out
	}
	if now.Sub(s.LastEmitted) >= heartbeat {
		emit(alert.StatusFiring, "recovering", time.Time{})
	}
	return out
}

func clone(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

package app

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"sync"
	"time"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/source/probe"
)

// probeRunner is one probe and the runner that runs it: one runner per probe, so that a reload
// stops and starts the probes it changes and leaves the others running.
type probeRunner struct {
	cfg    config.ProbeConfig
	r      *probe.Runner
	cancel context.CancelFunc // set while it runs
	done   chan struct{}      // closed when its run ends
}

// probeSet is the probes in force. The leader runs them (run); a reload replaces them (update).
// A probe's episode (firing or not, since when, its pending alerts) is its saved state, by name:
// a probe a reload changes stops, and its successor continues the episode from the state saved.
type probeSet struct {
	log     *slog.Logger
	changed chan struct{} // update wakes run to start the probes it added

	mu      sync.Mutex
	runners map[string]*probeRunner
}

func newProbeSet(log *slog.Logger) *probeSet {
	return &probeSet{log: log, runners: map[string]*probeRunner{}, changed: make(chan struct{}, 1)}
}

// drillProbeMaxAge is how long a drill run that never finished (its driver died) still marks the
// episodes of the probes it lists.
const drillProbeMaxAge = time.Hour

// drillProbeLister reads which probes running drills list: store.ActiveDrillProbes.
type drillProbeLister interface {
	ActiveDrillProbes(ctx context.Context, now time.Time, maxAge time.Duration) (map[string]string, error)
}

// drillProbesOf is a.drillProbes reading l: the unfinished drill runs started within
// drillProbeMaxAge.
func (a *App) drillProbesOf(l drillProbeLister) func(ctx context.Context) (map[string]string, error) {
	return func(ctx context.Context) (map[string]string, error) {
		return l.ActiveDrillProbes(ctx, a.o.Now(), drillProbeMaxAge)
	}
}

// drillsOfProbes is the one probe.Drills every probe runner shares (across reloads): an episode
// a probe starts while a running drill lists it is the drill's (its alerts carry the
// responder_drill label). It reads a.drillProbes at most once per round, and only when an
// episode starts; nil a.drillProbes: no drills (New sets it to read the store).
func (a *App) drillsOfProbes() *probe.Drills {
	return &probe.Drills{
		Read: func(ctx context.Context) (map[string]string, error) {
			if a.drillProbes == nil {
				return nil, nil
			}
			return a.drillProbes(ctx)
		},
		Now:    a.o.Now,
		Logger: a.o.Logger.With("component", "probe"),
	}
}

// buildProbes builds a runner for each of cfgs (nothing runs yet).
func (a *App) buildProbes(cfgs []config.ProbeConfig) (map[string]*probeRunner, error) {
	out := make(map[string]*probeRunner, len(cfgs))
	for _, c := range cfgs {
		r, err := probe.New([]config.ProbeConfig{c}, a.probeOptions())
		if err != nil {
			return nil, err
		}
		if _, dup := out[c.Name]; dup {
			return nil, fmt.Errorf("probe %q is defined twice", c.Name)
		}
		out[c.Name] = &probeRunner{cfg: c, r: r}
	}
	return out, nil
}

// buildChangedProbes is the probe set of a reload: the runners in force for the probes whose
// configuration is the same, new ones for the others. When one cannot be built, the series the
// others built started are deleted again (those of a probe in force stay).
func (a *App) buildChangedProbes(cfgs []config.ProbeConfig) (map[string]*probeRunner, error) {
	keep := a.probes.unchanged(cfgs)
	var build []config.ProbeConfig
	for _, c := range cfgs {
		if keep[c.Name] == nil {
			build = append(build, c)
		}
	}
	built := map[string]*probeRunner{}
	for _, c := range build {
		one, err := a.buildProbes([]config.ProbeConfig{c})
		if err != nil {
			for name, pr := range built {
				if !a.probes.has(name, pr.cfg.Kind()) {
					pr.r.Forget()
				}
			}
			return nil, err
		}
		built[c.Name] = one[c.Name]
	}
	for name, pr := range keep {
		built[name] = pr
	}
	return built, nil
}

// unchanged returns the runners in force whose probe cfgs keeps as it is.
func (s *probeSet) unchanged(cfgs []config.ProbeConfig) map[string]*probeRunner {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]*probeRunner{}
	for _, c := range cfgs {
		if pr := s.runners[c.Name]; pr != nil && reflect.DeepEqual(pr.cfg, c) {
			out[c.Name] = pr
		}
	}
	return out
}

// has reports whether a probe of this name and kind is in force.
func (s *probeSet) has(name, kind string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	pr := s.runners[name]
	return pr != nil && pr.cfg.Kind() == kind
}

// update puts next in force: the runners it does not keep stop (update waits for their last
// run to save its state, so that a successor reads it), and run starts the new ones when this
// replica leads. A probe removed, or whose kind changed, has its metric series deleted.
func (s *probeSet) update(next map[string]*probeRunner) {
	s.mu.Lock()
	for name, pr := range s.runners {
		if next[name] == pr {
			continue
		}
		pr.stop()
		if n := next[name]; n == nil || n.cfg.Kind() != pr.cfg.Kind() {
			pr.r.Forget()
		}
		s.log.Info("probe stopped by a reload", "probe", name)
	}
	s.runners = next
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// run runs every probe until ctx ends (the leader's term), starting those a reload adds, then
// stops them all.
func (s *probeSet) run(ctx context.Context) error {
	for {
		s.startAll(ctx)
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for _, pr := range s.runners {
				pr.stop()
			}
			s.mu.Unlock()
			return nil
		case <-s.changed:
		}
	}
}

// startAll starts the probes that do not run.
func (s *probeSet) startAll(ctx context.Context) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, pr := range s.runners {
		if pr.cancel == nil {
			s.start(ctx, pr)
		}
	}
}

// start runs pr under ctx; s.mu is held.
func (s *probeSet) start(ctx context.Context, pr *probeRunner) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	pr.cancel, pr.done = cancel, done
	go func() {
		defer close(done)
		if err := pr.r.Run(ctx); err != nil {
			s.log.Warn("probe stopped", "probe", pr.cfg.Name, "err", err)
		}
	}()
}

// stop ends pr's run, if it runs, and waits for it; s.mu is held.
func (pr *probeRunner) stop() {
	if pr.cancel == nil {
		return
	}
	pr.cancel()
	<-pr.done
	pr.cancel, pr.done = nil, nil
}

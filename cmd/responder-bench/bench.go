package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// bench is one run of the harness.
type bench struct {
	o   options
	dir string // temporary: the responders' storage and the baselines' stores
	dbs *databases
	// baselines by alerts per publish: o.perRequest (throughput) and 1 (per-request-1).
	baselines map[int]*baselineSet
	phases    []phaseResult
	// profile and memProfile are o.cpuProfile and o.memProfile until the first responder takes
	// them.
	profile, memProfile string
}

// run runs the selected phases with the baselines spread around them, then prints the summary
// (and writes --json, prints --compare). Every child responder is stopped on every way out.
func run(ctx context.Context, o options) error {
	defer stopChildren()
	started := time.Now()
	dir, err := os.MkdirTemp("", "responder-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	b := &bench{o: o, dir: dir, baselines: map[int]*baselineSet{}, profile: o.cpuProfile, memProfile: o.memProfile}
	if len(o.phases) > 0 {
		if b.dbs, err = openDatabases(ctx, o.adminURL); err != nil {
			return err
		}
		defer b.dbs.close(ctx)
	}
	b.prepareBaselines()
	fmt.Printf("responder-bench: phases %v, %d rules, %d clients, GOMAXPROCS %d\n", o.phases, o.rules, o.concurrency, gomaxprocs())
	// The baselines run three times: before the phases, between (after the first half) and after,
	// so a slow patch of disk hits both sides. Median of 3.
	between := len(o.phases) / 2
	if len(o.phases) == 1 {
		between = 1
	}
	for i, phase := range o.phases {
		if i == 0 || i == between {
			if err := b.runBaselines(ctx); err != nil {
				return err
			}
		}
		if err := b.runPhase(ctx, phase); err != nil {
			return fmt.Errorf("%s phase: %w", phase, err)
		}
	}
	for range 3 - b.baselineRuns() {
		if err := b.runBaselines(ctx); err != nil {
			return err
		}
	}
	return b.finish(started)
}

// prepareBaselines makes the body sets the selected phases compare with: the throughput phase's
// bodies (--per-request alerts each) and the per-request-1 phase's (one alert each). The phases
// post the very same bodies.
func (b *bench) prepareBaselines() {
	starts := alertsStart()
	for _, phase := range b.o.phases {
		n, per := 0, 0
		switch phase {
		case phaseThroughput:
			n, per = b.o.alerts, b.o.perRequest
		case phaseSingle:
			n, per = b.o.singleAlerts, 1
		default:
			continue
		}
		b.baselines[per] = &baselineSet{perPublish: per, bodies: payloads(0, max(1, n/per), per, starts)}
	}
}

func (b *bench) baselineRuns() int {
	runs := 3
	for _, s := range b.baselines {
		runs = min(runs, len(s.rates))
	}
	return runs
}

func (b *bench) runBaselines(ctx context.Context) error {
	shapes := []int{b.o.perRequest}
	if b.o.perRequest != 1 {
		shapes = append(shapes, 1)
	}
	for _, per := range shapes {
		if s := b.baselines[per]; s != nil && len(s.rates) < 3 {
			if err := s.run(ctx, b.dir, b.o.concurrency); err != nil {
				return err
			}
		}
	}
	return nil
}

func (b *bench) runPhase(ctx context.Context, phase string) error {
	var r phaseResult
	var err error
	switch phase {
	case phaseThroughput:
		r, err = b.loadPhase(ctx, phase, b.baselines[b.o.perRequest].bodies, b.o.perRequest, b.o.concurrency)
	case phaseSingle:
		r, err = b.loadPhase(ctx, phase, b.baselines[1].bodies, 1, b.o.concurrency)
	case phaseStorm:
		r, err = b.loadPhase(ctx, phase, payloads(0, max(1, b.o.stormAlerts/b.o.perRequest), b.o.perRequest, alertsStart()), b.o.perRequest, b.o.concurrency)
	case phasePaced:
		r, err = b.pacedPhase(ctx)
	case phaseNotify:
		r, err = b.notifyPhase(ctx)
	case phaseScaling:
		var rs []phaseResult
		rs, err = b.scalingPhase(ctx)
		b.phases = append(b.phases, rs...)
		return err
	}
	if err != nil {
		return err
	}
	b.phases = append(b.phases, r)
	return nil
}

// phaseEnv is one phase's responder and the harness's connection to its fresh database.
type phaseEnv struct {
	r     *responder
	db    *pgx.Conn
	drop  func()
	once  sync.Once
	usage procUsage
}

// startPhase creates a fresh database and storage directory for phase and starts a responder on
// them with cfg (its database URL filled in). dryRun is the responder's --dry-run.
func (b *bench) startPhase(ctx context.Context, phase string, cfg responderConfig, dryRun bool) (*phaseEnv, error) {
	dir, err := childDir(b.dir, phase)
	if err != nil {
		return nil, err
	}
	url, drop, err := b.dbs.create(ctx, phase)
	if err != nil {
		return nil, err
	}
	cfg.dbURL = url
	e := &phaseEnv{drop: drop}
	ok := false
	defer func() {
		if !ok {
			e.close(ctx)
		}
	}()
	path, err := cfg.write(dir)
	if err != nil {
		return nil, err
	}
	spec := childSpec{ConfigFile: path, StoragePath: filepath.Join(dir, "data"), DryRun: dryRun, CPUProfile: b.profile, MemProfile: b.memProfile}
	if e.r, err = startResponder(ctx, spec); err != nil {
		return nil, err
	}
	if b.profile != "" {
		fmt.Printf("%s: profiling the responder (pid %d) into %s\n", phase, e.r.pid, b.profile)
		b.profile = ""
	}
	if b.memProfile != "" {
		fmt.Printf("%s: writing the responder's (pid %d) heap profile at its peak into %s\n", phase, e.r.pid, b.memProfile)
		b.memProfile = ""
	}
	if e.db, err = pgx.Connect(ctx, url); err != nil {
		return nil, err
	}
	ok = true
	return e, nil
}

// close stops the responder, then drops the database. It may be called more than once and returns
// the responder's usage read before it was stopped.
func (e *phaseEnv) close(ctx context.Context) procUsage {
	e.once.Do(func() {
		if e.r != nil {
			e.usage = e.r.stop()
		}
		if e.db != nil {
			e.db.Close(context.WithoutCancel(ctx))
		}
		e.drop()
	})
	return e.usage
}

// config is the responder configuration of the dry-run phases.
func (b *bench) config() responderConfig {
	return responderConfig{consumers: b.o.consumers, rules: b.o.rules, actionURL: "http://" + blackhole + "/restart"}
}

package engine

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
)

// Settings are what a configuration reload changes in a running engine (Reconfigure): the
// handlers and the rules built against them, and the guards' plain values. The other Options
// (Store, Owner, MaxConcurrent, Lease, Poll, PauseWatch, ClaimBatch, Executors, MaxParamsBytes,
// Now, Logger, Registerer) are fixed at New. Zero values take the defaults New gives them.
type Settings struct {
	Handlers *handlers.Registry
	Rules    *rules.Set
	// DryRun and Paused are safety.dry_run (or --dry-run) and safety.paused.
	DryRun, Paused bool
	MaxAlertAge    time.Duration
	ActionTimeout  time.Duration
	ApprovalTTL    time.Duration
	Budgets        []Budget
	// DrillBudget and DrillPage are drills.budget and drills.page (Options).
	DrillBudget Budget
	DrillPage   string

	StormMaxTargets          int
	StormWindow              time.Duration
	StormMaxWorkloadFraction float64
	BreakerFailures          int
	BreakerOpenFor           time.Duration
}

// live is the engine's reloadable state: its Options as of the last Reconfigure and each
// handler's Spec (a Spec may depend on the handler's config: http.request's default timeout).
type live struct {
	Options
	specs map[string]handlers.Spec
}

func newLive(o Options) *live {
	l := &live{Options: o, specs: make(map[string]handlers.Spec)}
	for _, n := range o.Handlers.Names() {
		h, _ := o.Handlers.Get(n)
		l.specs[n] = h.Spec()
	}
	return l
}

// cur returns the engine's reloadable state in force. A unit of work that reads the rules and
// then the handlers (matching, an executor pass) may see new handlers with the rules it read
// before a reload, never new rules with old handlers: Reconfigure swaps the handlers first.
func (e *Engine) cur() *live {
	if l := e.live.Load(); l != nil {
		return l
	}
	return &live{Options: e.o} // an Engine not built by New (unit tests of one guard)
}

// Reconfigure swaps in a reload's handlers, rules and guard settings while the engine runs.
// Nothing of it is checked against the database: the caller built and validated everything
// before. The handlers and settings are swapped first, then the rules, so that rules compiled
// against the new handlers never run through the old ones. Actions already built keep their
// handler: a running action finishes with the instance it started with, and the next claim
// builds with the new one. The handler registry must name the same handlers as the one the
// engine was built with (the metrics and the specs are per handler name).
func (e *Engine) Reconfigure(s Settings) error {
	if s.Handlers == nil || s.Rules == nil {
		return errors.New("engine: reconfigure needs handlers and rules")
	}
	e.liveMu.Lock()
	defer e.liveMu.Unlock()
	if got, want := s.Handlers.Names(), e.o.Handlers.Names(); !slices.Equal(got, want) {
		return fmt.Errorf("engine: reconfigure: handlers %v, want the same as at start %v", got, want)
	}
	o := e.cur().Options
	o.Handlers = s.Handlers
	o.DryRun, o.Paused = s.DryRun, s.Paused
	o.MaxAlertAge, o.ActionTimeout, o.ApprovalTTL = s.MaxAlertAge, s.ActionTimeout, s.ApprovalTTL
	o.Budgets = slices.Clone(s.Budgets)
	o.DrillBudget, o.DrillPage = s.DrillBudget, s.DrillPage
	o.StormMaxTargets, o.StormWindow, o.StormMaxWorkloadFraction = s.StormMaxTargets, s.StormWindow, s.StormMaxWorkloadFraction
	o.BreakerFailures, o.BreakerOpenFor = s.BreakerFailures, s.BreakerOpenFor
	e.live.Store(newLive(o.withDefaults()))
	e.SetRules(s.Rules)
	return nil
}

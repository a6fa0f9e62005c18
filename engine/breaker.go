package engine

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/sony/gobreaker/v2"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// The circuit breakers are gobreaker state machines (github.com/sony/gobreaker/v2) whose shared
// state lives in the breaker rows: each outcome of a disruptive action locks its breaker's row,
// runs gobreaker's machine from the stored state (a DistributedCircuitBreaker over
// store.BreakerMachine), and writes back both the machine and the verdict columns (state,
// opened_at, trial) that every replica's guard reads. gobreaker decides when a closed breaker
// trips (ReadyToTrip: `failures` consecutive failures), which outcomes do not count (IsExcluded),
// and what the half-open trial's outcome does (one success closes, a failure re-opens). The open
// period and the one trial cluster-wide are the rows' (engine clock, compare-and-set): gobreaker's
// own timeout runs on the wall clock of one process, so it is set beyond reach and the engine moves
// the machine to half-open itself when it claims the trial.

var (
	errOutcomeFailed = errors.New("the action failed")
	// errNoVerdict marks an outcome that says nothing about the target (a PDB refusal, a bad
	// param, a replica that died): gobreaker excludes it, which also frees the half-open slot.
	errNoVerdict = errors.New("the outcome says nothing about the target")
)

// machineTimeout keeps gobreaker from leaving the open state on its own (see above).
const machineTimeout = 100 * 365 * 24 * time.Hour

type breakerMachine = gobreaker.DistributedCircuitBreaker[struct{}]

// machine loads the gobreaker machine of k from its row (locking it until tx ends). The machine
// works on a copy of the row's state that the caller writes back with data.Flush: gobreaker never
// sees a database error (see store.BreakerMachine for the upstream bug this avoids).
func (e *Engine) machine(ctx context.Context, tx pgx.Tx, k store.BreakerKey, now time.Time) (*breakerMachine, *store.BreakerMachine, error) {
	data, err := e.st.BreakerMachineTx(ctx, tx, k, now)
	if err != nil {
		return nil, nil, err
	}
	m, err := e.newMachine(data, k)
	return m, data, err
}

// newMachine runs gobreaker over the row-locked shared state data. It must not be given a store
// that can fail: gobreaker v2.4.0's NewDistributedCircuitBreaker panics (a deferred unlock on the
// nil breaker it is returning) when the store fails after its lock is taken, which ended the
// process during a database outage (issue 13; TestGobreakerPanicsOnAFailingStore).
func (e *Engine) newMachine(data *store.BreakerMachine, k store.BreakerKey) (*breakerMachine, error) {
	threshold := uint32(max(e.cur().BreakerFailures, 1))
	m, err := gobreaker.NewDistributedCircuitBreaker[struct{}](data, gobreaker.Settings{
		Name:        k.Handler + " " + k.Scope,
		MaxRequests: 1,
		Timeout:     machineTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= threshold },
		IsExcluded:  func(err error) bool { return errors.Is(err, errNoVerdict) },
	})
	if err != nil {
		return nil, fmt.Errorf("breaker %s/%s: %w", k.Handler, k.Scope, err)
	}
	return m, nil
}

// stateName maps gobreaker's states to the rows' (and the API's).
func stateName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return store.BreakerOpen
	case gobreaker.StateHalfOpen:
		return store.BreakerHalfOpen
	default:
		return store.BreakerClosed
	}
}

// halfOpenMachine moves k's machine from open to half-open once the engine has claimed the trial
// (its open period is over by the engine's clock): the stored expiry is moved to the past and
// gobreaker makes the transition itself (a new generation, counts cleared).
func (e *Engine) halfOpenMachine(ctx context.Context, tx pgx.Tx, k store.BreakerKey, now time.Time) error {
	m, data, err := e.machine(ctx, tx, k, now) // stores a fresh machine when the row had none
	if err != nil {
		return err
	}
	raw, err := data.GetData("")
	if err != nil {
		return err
	}
	var st gobreaker.SharedState
	if err := json.Unmarshal(raw, &st); err != nil {
		return fmt.Errorf("breaker %s/%s machine: %w", k.Handler, k.Scope, err)
	}
	// The row says open (its period over) or half-open without a trial; a machine that says
	// otherwise (a fresh one, e.g. for a row from before the machines) is brought into line.
	if st.State != gobreaker.StateHalfOpen {
		st.State, st.Expiry = gobreaker.StateOpen, time.Unix(0, 0)
		b, err := json.Marshal(st)
		if err != nil {
			return err
		}
		if err := data.SetData("", b); err != nil {
			return err
		}
	}
	if _, err := m.State(); err != nil { // reads the stored state: gobreaker makes the transition itself
		return err
	}
	return data.Flush(ctx)
}

// feedBreaker gives the outcome of a disruptive action that ran to its breaker's machine. Failures
// count, except a refusal by a PodDisruptionBudget (the system protecting itself) and a bad param
// (the rule's fault, not the target's). An `unknown` counts when the handler hung past its
// timeout, not when a responder replica died (lease_expired says nothing about the target). While
// the breaker is half-open only its trial's outcome counts; while it is open, none does.
func (e *Engine) feedBreaker(ctx context.Context, tx pgx.Tx, p *planner, a store.Action, state vocab.State, reason vocab.Reason) error {
	if a.Class != vocab.ClassDisruptive {
		return nil
	}
	var outcome error
	switch {
	case reason == vocab.ReasonInternalError: // our own bug (a panic) says nothing about the target
		outcome = errNoVerdict
	case state == vocab.StateSucceeded:
	case state == vocab.StateUnknown && reason == vocab.ReasonTimeout:
		outcome = errOutcomeFailed
	case state == vocab.StateFailed && reason != vocab.ReasonPDBBlocked && reason != vocab.ReasonBadParam && reason != vocab.ReasonPaused && reason != vocab.ReasonLeaseLost:
		outcome = errOutcomeFailed
	default:
		outcome = errNoVerdict
	}
	k := store.BreakerKey{Handler: a.Handler, Scope: a.Scope}
	m, data, err := e.machine(ctx, tx, k, p.now)
	if err != nil {
		return err
	}
	if err := e.judge(ctx, tx, p, a, m, data.Row(), outcome); err != nil {
		return err
	}
	return data.Flush(ctx)
}

// judge runs one outcome of action a through its breaker's machine m and records the verdict in
// the breaker row (read as row under the lock).
func (e *Engine) judge(ctx context.Context, tx pgx.Tx, p *planner, a store.Action, m *breakerMachine, row store.Breaker, outcome error) error {
	k := store.BreakerKey{Handler: a.Handler, Scope: a.Scope}
	switch {
	case row.State == store.BreakerOpen:
		return nil
	case row.State == store.BreakerHalfOpen && (row.TrialActionID == nil || *row.TrialActionID != a.ID):
		return nil
	case row.State == store.BreakerHalfOpen && errors.Is(outcome, errNoVerdict):
		// Not a verdict: let another action be the trial.
		if _, err := m.Execute(func() (struct{}, error) { return struct{}{}, outcome }); err != nil && !errors.Is(err, errNoVerdict) {
			return err
		}
		return e.st.ReleaseBreakerTrialTx(ctx, tx, k, a.ID)
	}
	if _, err := m.Execute(func() (struct{}, error) { return struct{}{}, outcome }); err != nil &&
		!errors.Is(err, errOutcomeFailed) && !errors.Is(err, errNoVerdict) {
		return fmt.Errorf("breaker %s/%s: %w", k.Handler, k.Scope, err)
	}
	after, err := m.State()
	if err != nil {
		return err
	}
	name := stateName(after)
	if err := e.st.SetBreakerTx(ctx, tx, k, name, int(m.Counts().ConsecutiveFailures), p.now); err != nil {
		return err
	}
	if name == store.BreakerOpen && row.State != store.BreakerOpen {
		p.audit(store.AuditInsert{IncidentID: a.IncidentID, ActionID: a.ID, Kind: store.AuditControl, Actor: e.o.Owner,
			Reason: string(vocab.ReasonBreaker), RuleHash: a.RuleHash, Detail: map[string]any{"handler": a.Handler, "scope": a.Scope}})
	}
	return nil
}

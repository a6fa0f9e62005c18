package engine

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Store is what the engine needs from the database: exactly the *store.Store methods it calls
// (the store has many more), grouped by the part of the engine that calls them. *store.Store
// implements it; the engine's own tests run against the real one. The guards see an even
// narrower, transaction-bound view of it (guardStore, guards.go), which has an in-memory fake.
type Store interface {
	InTx(ctx context.Context, fn func(pgx.Tx) error) error

	IncidentStore
	ActionStore
	GuardStore
	BreakerStore
	DecisionStore
}

// IncidentStore is what Process and the `for` timers write: incidents, the firing set, timers,
// planned actions and the audit trail.
type IncidentStore interface {
	FiringAlerts(ctx context.Context, since time.Time) ([]store.OpenAlert, error)
	ProbeAlerts(ctx context.Context, since time.Time) ([]store.OpenAlert, error)
	RecordFiringTx(ctx context.Context, tx pgx.Tx, as []alert.Alert, now time.Time) error
	RefreshIncidentsTx(ctx context.Context, tx pgx.Tx, rules []string, ks []store.RefreshKey) error
	UpsertIncidentsTx(ctx context.Context, tx pgx.Tx, ups []store.IncidentUpsert) ([]store.UpsertResult, error)
	ResolveIncidentsTx(ctx context.Context, tx pgx.Tx, keys []store.ResolveKey, at time.Time) ([]store.Resolved, error)
	FireIncidentTx(ctx context.Context, tx pgx.Tx, id int64, at time.Time) (bool, error)
	SuppressIncidentTx(ctx context.Context, tx pgx.Tx, id int64, at time.Time) error
	InsertTimersTx(ctx context.Context, tx pgx.Tx, ts []store.TimerInsert) error
	ClaimDueTimersTx(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]store.DueTimer, error)
	RescheduleTimerTx(ctx context.Context, tx pgx.Tx, id int64, due time.Time) error
	DeleteTimerTx(ctx context.Context, tx pgx.Tx, id int64) error
	InsertActionsTx(ctx context.Context, tx pgx.Tx, as []store.NewAction) ([]int64, error)
	PlanActionsTx(ctx context.Context, tx pgx.Tx, as []store.NewAction) error
	SucceededActionsTx(ctx context.Context, tx pgx.Tx, incidents []int64, handlers []string) ([]store.Action, error)
	AuditTx(ctx context.Context, tx pgx.Tx, es []store.AuditInsert) error
}

// ActionStore is what the executor does to action rows: claims, leases, outcomes.
type ActionStore interface {
	ClaimRunnableTx(ctx context.Context, tx pgx.Tx, now time.Time, limit int) ([]store.Claimed, error)
	MarkCheckingTx(ctx context.Context, tx pgx.Tx, ids []int64, owner string, until time.Time) error
	// SetParamsTx records the params chained steps started with (rendered from earlier results).
	SetParamsTx(ctx context.Context, tx pgx.Tx, ups []store.ParamsUpdate) error
	ReclaimCheckedTx(ctx context.Context, tx pgx.Tx, ids []int64, owner string, until time.Time) ([]store.Claimed, error)
	ExpireLeasesTx(ctx context.Context, tx pgx.Tx, now time.Time, grace time.Duration) ([]store.Claimed, error)
	ExpireApprovalsTx(ctx context.Context, tx pgx.Tx, now time.Time, ttl time.Duration) ([]store.Claimed, error)
	StartActionTx(ctx context.Context, tx pgx.Tx, id int64, owner string, at, leaseUntil time.Time) error
	FinishActionsTx(ctx context.Context, tx pgx.Tx, owner string, os []store.Outcome) ([]int64, error)
	RequeueActionTx(ctx context.Context, tx pgx.Tx, owner string, id int64, notBefore time.Time, reason vocab.Reason, errText string) (bool, error)
	CancelLaterStepsTx(ctx context.Context, tx pgx.Tx, incidentID int64, phase vocab.Phase, step int, at time.Time) error
	RenewOwnedLeases(ctx context.Context, owner string, ids []int64, until time.Time) ([]int64, error)
	// Verification (verify.go).
	VerifyActionTx(ctx context.Context, tx pgx.Tx, owner string, id int64, deadline time.Time, result string, fields map[string]any) (bool, error)
	ClaimVerifyingTx(ctx context.Context, tx pgx.Tx, now time.Time, rules []string, limit int) ([]store.Claimed, error)
	FinishVerifyingTx(ctx context.Context, tx pgx.Tx, os []store.Outcome) ([]int64, error)
}

// GuardStore is the guards' state: the kill switch, cooldowns, the storm guard's counts and
// budgets (the breakers are BreakerStore's).
type GuardStore interface {
	Pause(ctx context.Context) (store.PauseState, error)
	PauseTx(ctx context.Context, tx pgx.Tx) (store.PauseState, error)
	CooldownsTx(ctx context.Context, tx pgx.Tx, keys []store.CooldownKey, now time.Time) (map[store.CooldownKey]time.Time, error)
	ClaimCooldownTx(ctx context.Context, tx pgx.Tx, k store.CooldownKey, now, until time.Time) (bool, time.Time, error)
	StormyRulesTx(ctx context.Context, tx pgx.Tx, rules []string, since time.Time, limit int) (map[string]int, error)
	WorkloadMembersTx(ctx context.Context, tx pgx.Tx, rule, target string, since time.Time) (int, error)
	ClaimStormEscalationTx(ctx context.Context, tx pgx.Tx, rule string, now time.Time, window time.Duration) (bool, error)
	BudgetsUsedTx(ctx context.Context, tx pgx.Tx, reads []store.BudgetRead, now time.Time) (map[store.BudgetKey]int, error)
	SpendBudgetTx(ctx context.Context, tx pgx.Tx, budget, key string, limit int, window time.Duration, now time.Time, actionID int64) (bool, error)
}

// BreakerStore holds the circuit breakers' rows and their gobreaker machines (breaker.go).
type BreakerStore interface {
	BreakersTx(ctx context.Context, tx pgx.Tx, keys []store.BreakerKey) (map[store.BreakerKey]store.Breaker, error)
	BreakerMachineTx(ctx context.Context, tx pgx.Tx, k store.BreakerKey, now time.Time) (*store.BreakerMachine, error)
	SetBreakerTx(ctx context.Context, tx pgx.Tx, k store.BreakerKey, state string, failures int, now time.Time) error
	ClaimBreakerTrialTx(ctx context.Context, tx pgx.Tx, k store.BreakerKey, openFor time.Duration, now time.Time, actionID int64) (bool, error)
	ReleaseBreakerTrialTx(ctx context.Context, tx pgx.Tx, k store.BreakerKey, actionID int64) error
}

// DecisionStore records approval decisions; the engine's approval policy decides (approvals.go).
type DecisionStore interface {
	RecordDecision(ctx context.Context, actionID int64, approver, decision, via string, at time.Time,
		policy func(store.DecisionCheck) error) (store.DecisionResult, error)
}

var _ Store = (*store.Store)(nil)

// txGuards is the guards' store (guardStore) on the real one: the reads and claims run in the
// executor pass's transaction, or in a savepoint of it.
type txGuards struct {
	e  *Engine
	tx pgx.Tx
}

func (s txGuards) pause(ctx context.Context) (store.PauseState, error) {
	return s.e.st.PauseTx(ctx, s.tx)
}

func (s txGuards) cooldowns(ctx context.Context, keys []store.CooldownKey, now time.Time) (map[store.CooldownKey]time.Time, error) {
	return s.e.st.CooldownsTx(ctx, s.tx, keys, now)
}

func (s txGuards) breakers(ctx context.Context, keys []store.BreakerKey) (map[store.BreakerKey]store.Breaker, error) {
	return s.e.st.BreakersTx(ctx, s.tx, keys)
}

func (s txGuards) stormyRules(ctx context.Context, rules []string, since time.Time, maxTargets int) (map[string]int, error) {
	return s.e.st.StormyRulesTx(ctx, s.tx, rules, since, maxTargets)
}

// workloadMembers and budgetsUsed read in a savepoint: a failed read must not abort the pass.
func (s txGuards) workloadMembers(ctx context.Context, rule, target string, since time.Time) (int, error) {
	var n int
	err := inSavepoint(ctx, s.tx, func(sp pgx.Tx) error {
		var err error
		n, err = s.e.st.WorkloadMembersTx(ctx, sp, rule, target, since)
		return err
	})
	return n, err
}

func (s txGuards) budgetsUsed(ctx context.Context, reads []store.BudgetRead, now time.Time) (map[store.BudgetKey]int, error) {
	var used map[store.BudgetKey]int
	err := inSavepoint(ctx, s.tx, func(sp pgx.Tx) error {
		var err error
		used, err = s.e.st.BudgetsUsedTx(ctx, sp, reads, now)
		return err
	})
	return used, err
}

func (s txGuards) savepoint(ctx context.Context, fn func(guardStore) error) error {
	return inSavepoint(ctx, s.tx, func(sp pgx.Tx) error { return fn(txGuards{e: s.e, tx: sp}) })
}

func (s txGuards) claimCooldown(ctx context.Context, k store.CooldownKey, now, until time.Time) (bool, time.Time, error) {
	return s.e.st.ClaimCooldownTx(ctx, s.tx, k, now, until)
}

// claimBreakerTrial also moves the breaker's gobreaker machine to half-open (breaker.go).
func (s txGuards) claimBreakerTrial(ctx context.Context, k store.BreakerKey, openFor time.Duration, now time.Time, actionID int64) (bool, error) {
	ok, err := s.e.st.ClaimBreakerTrialTx(ctx, s.tx, k, openFor, now, actionID)
	if err != nil || !ok {
		return ok, err
	}
	return true, s.e.halfOpenMachine(ctx, s.tx, k, now)
}

func (s txGuards) spendBudget(ctx context.Context, budget, key string, maxSpend int, window time.Duration, now time.Time, actionID int64) (bool, error) {
	return s.e.st.SpendBudgetTx(ctx, s.tx, budget, key, maxSpend, window, now, actionID)
}

func (s txGuards) startAction(ctx context.Context, id int64, owner string, now, leaseUntil time.Time) (bool, error) {
	err := s.e.st.StartActionTx(ctx, s.tx, id, owner, now, leaseUntil)
	if store.IsTargetBusy(err) {
		return false, nil
	}
	return err == nil, err
}

// inSavepoint runs fn in a savepoint of tx: when fn fails, only what it did is rolled back and
// the transaction goes on (a failed statement would otherwise abort all of it).
func inSavepoint(ctx context.Context, tx pgx.Tx, fn func(pgx.Tx) error) error {
	sp, err := tx.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(sp); err != nil {
		_ = sp.Rollback(ctx)
		return err
	}
	return sp.Commit(ctx)
}

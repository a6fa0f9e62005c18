// Package vocab is responder's typed vocabulary: the states of incidents and actions, the reasons
// recorded on actions and audit rows, the phases of a rule, the modes of a rule and the classes of
// a handler. Each type has one list (States, Reasons, ...): metric label pre-initialisation, the
// store's SQL and the tests read it, so a value added here reaches all of them. The values are the
// user contract of DESIGN.md §4 (API JSON, audit rows, metric labels): never rename one.
//
// The SQL migrations are the only other place these strings are spelled; store tests check that
// the database's constraints accept exactly these lists.
package vocab

import "slices"

// State is the state of an action (DESIGN.md §4).
type State string

// Action states.
const (
	StatePlanned          State = "planned"
	StateAwaitingApproval State = "awaiting_approval"
	StateApproved         State = "approved"
	StateDenied           State = "denied"
	StateExpired          State = "expired"
	StateRunning          State = "running"
	StateSucceeded        State = "succeeded"
	StateFailed           State = "failed"
	StateUnknown          State = "unknown"
	StateSkipped          State = "skipped"
	StateDryRun           State = "dry_run"
	// StateVerifying: the last step of a rule with `verify` succeeded and the engine waits, until
	// the action's verify deadline, for the rule's verify condition (by default: the incident
	// resolved). It then becomes succeeded, or failed with reason not_recovered. Not final, not
	// claimable: no lease, no execution slot, no worker waits for it.
	StateVerifying State = "verifying"
)

// States lists every action state.
var States = []State{StatePlanned, StateAwaitingApproval, StateApproved, StateDenied, StateExpired,
	StateRunning, StateSucceeded, StateFailed, StateUnknown, StateSkipped, StateDryRun, StateVerifying}

// Waiting lists the states of an action that has not started: it may still run, and it is
// cancelled when its incident resolves.
var Waiting = []State{StatePlanned, StateAwaitingApproval, StateApproved}

// Claimable lists the states from which the executor may start an action.
var Claimable = []State{StatePlanned, StateApproved}

// Final reports whether s is an outcome: the action will never change state again.
func (s State) Final() bool {
	return !slices.Contains(Waiting, s) && s != StateRunning && s != StateVerifying
}

// Outcomes lists the final states, in the order of States (responder_actions_total's outcome).
var Outcomes = func() []State {
	var out []State
	for _, s := range States {
		if s.Final() {
			out = append(out, s)
		}
	}
	return out
}()

// IncidentState is the state of an incident.
type IncidentState string

// Incident states.
const (
	IncidentPending    IncidentState = "pending"
	IncidentFiring     IncidentState = "firing"
	IncidentResolved   IncidentState = "resolved"
	IncidentSuppressed IncidentState = "suppressed"
	// IncidentAbandoned closes an open incident nobody heard of for safety.retention (its
	// resolution was lost); retention deletes it later like a resolved one.
	IncidentAbandoned IncidentState = "abandoned"
)

// IncidentStates lists every incident state.
var IncidentStates = []IncidentState{IncidentPending, IncidentFiring, IncidentResolved, IncidentSuppressed, IncidentAbandoned}

// Open lists the states of an incident that has not ended.
var Open = []IncidentState{IncidentPending, IncidentFiring}

// Reason says why an action is in its state, or why an audit row was written.
type Reason string

// Reasons an action fails with (a handler's *handlers.Error, or the engine).
const (
	ReasonBadParam     Reason = "bad_param"
	ReasonTimeout      Reason = "timeout"
	ReasonClientError  Reason = "client_error"
	ReasonServerError  Reason = "server_error"
	ReasonNotRecovered Reason = "not_recovered"
	ReasonPDBBlocked   Reason = "pdb_blocked"
	ReasonError        Reason = "error"
	// ReasonInternalError: responder itself failed (a panic, a store error on this action only).
	ReasonInternalError Reason = "internal_error"
)

// Reasons the engine stops a running action with.
const (
	// ReasonPaused: a pause (the kill switch) was committed while a disruptive action ran; also
	// the reason a disruptive action is skipped while paused.
	ReasonPaused Reason = "paused"
	// ReasonLeaseLost: the replica running the action could not renew its lease, or found that
	// the action was no longer its own.
	ReasonLeaseLost Reason = "lease_lost"
	// ReasonLeaseExpired: a running action's lease ran out with no replica renewing it; it ends unknown
	// (its effect is not known).
	ReasonLeaseExpired Reason = "lease_expired"
)

// Reasons a guard skips (or holds back) an action with.
const (
	ReasonCooldown  Reason = "cooldown"
	ReasonStale     Reason = "stale"
	ReasonCancelled Reason = "cancelled"
	ReasonDryRun    Reason = "dry_run"
	ReasonShadow    Reason = "shadow"
	ReasonBudget    Reason = "budget_exhausted"
	ReasonBreaker   Reason = "breaker_open"
	ReasonStorm     Reason = "storm_blocked"
	// ReasonDenied and ReasonApprovalTTL end an action awaiting approval (a human's denial; the
	// approval TTL ran out).
	ReasonDenied      Reason = "denied"
	ReasonApprovalTTL Reason = "approval_ttl"
	// ReasonStepNotSucceeded skips a chained step: an earlier step whose result its params read
	// did not succeed (it was a dry run, or did not run), so there is no result to render them from.
	ReasonStepNotSucceeded Reason = "step_not_succeeded"
	// ReasonDrill records, as dry_run, a notify action of a drill's incident that was not sent: a
	// drill pages drills.page (page.slack only), never the real on-call, unless it says page: real.
	ReasonDrill Reason = "drill"
)

// Reasons of audit rows only.
const (
	ReasonStarted        Reason = "started"
	ReasonRetryScheduled Reason = "retry_scheduled"
	ReasonRecheckFailed  Reason = "recheck_failed"
	ReasonBreakerReset   Reason = "breaker_reset"
	ReasonPause          Reason = "pause"
	ReasonResume         Reason = "resume"
	ReasonStaleLeader    Reason = "stale_leader"
	ReasonDenyReason     Reason = "deny_reason"
	ReasonAbandoned      Reason = "abandoned"
	// ReasonNotPending and ReasonRuleRemoved: a `for` timer was dropped, its incident no longer
	// pending or its rule gone.
	ReasonNotPending  Reason = "not_pending"
	ReasonRuleRemoved Reason = "rule_removed"
	// ReasonVerifyStarted: the action's handler succeeded and its rule's verify condition is
	// awaited (state verifying); ReasonRecovered: the condition held in time (state succeeded).
	ReasonVerifyStarted Reason = "verify_started"
	ReasonRecovered     Reason = "recovered"
)

// Reasons lists every reason of an action or an audit row written by the engine, the store or
// the handlers (intake rejections have their own list: alert.RejectReasons).
var Reasons = []Reason{
	ReasonBadParam, ReasonTimeout, ReasonClientError, ReasonServerError, ReasonNotRecovered, ReasonPDBBlocked,
	ReasonError, ReasonInternalError, ReasonPaused, ReasonLeaseLost, ReasonLeaseExpired,
	ReasonCooldown, ReasonStale, ReasonCancelled, ReasonDryRun, ReasonShadow, ReasonBudget, ReasonBreaker,
	ReasonStorm, ReasonDenied, ReasonApprovalTTL, ReasonStepNotSucceeded, ReasonDrill,
	ReasonStarted, ReasonRetryScheduled, ReasonRecheckFailed, ReasonBreakerReset, ReasonPause, ReasonResume,
	ReasonStaleLeader, ReasonDenyReason, ReasonAbandoned, ReasonNotPending, ReasonRuleRemoved,
	ReasonVerifyStarted, ReasonRecovered,
}

// Phase is the part of a rule an action belongs to.
type Phase string

// Action phases: a rule's actions, its escalation, and what runs when the incident resolves.
const (
	PhaseActions    Phase = "actions"
	PhaseEscalate   Phase = "escalate"
	PhaseOnResolved Phase = "on_resolved"
	// PhaseResolve holds the resolve events of notifications sent for an incident (a page's
	// resolve), planned when the incident resolves.
	PhaseResolve Phase = "resolve"
)

// Phases lists every phase.
var Phases = []Phase{PhaseActions, PhaseEscalate, PhaseOnResolved, PhaseResolve}

// Mode is a rule's mode: enforce runs its actions, shadow records what it would have done.
type Mode string

// Rule modes.
const (
	ModeEnforce Mode = "enforce"
	ModeShadow  Mode = "shadow"
)

// Modes lists every mode.
var Modes = []Mode{ModeEnforce, ModeShadow}

// Class says whether an action changes the world (disruptive) or only tells humans (notify).
type Class string

// Classes.
const (
	ClassNotify     Class = "notify"
	ClassDisruptive Class = "disruptive"
)

// Classes lists every class.
var Classes = []Class{ClassNotify, ClassDisruptive}

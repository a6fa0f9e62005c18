package app

import (
	"time"

	"github.com/responder-sre/responder/store"
)

// The API's answers that are not store rows. They are API models, kept apart from the storage
// rows they are read from: a column may change without changing an answer, and the other way
// round. Their JSON is a contract (DESIGN.md §4): fields are never renamed or dropped. Fields are
// declared in the alphabetical order of their JSON names, the order of the maps these answers
// were before, so every answer stays byte-identical.

// apiStatus is GET /api/v1/status.
type apiStatus struct {
	ApprovalsPending int              `json:"approvals_pending"`
	Breakers         []store.Breaker  `json:"breakers"` // never null
	Budgets          []apiBudget      `json:"budgets"`  // never null
	BusPending       uint64           `json:"bus_pending"`
	DryRun           bool             `json:"dry_run"`
	LastReload       apiReload        `json:"last_reload"`
	Leader           apiLeader        `json:"leader"`
	Pause            store.PauseState `json:"pause"`
	// Paused is what is in force: safety.paused or the pause row.
	Paused   bool   `json:"paused"`
	RuleHash string `json:"rule_hash"`
	Rules    int    `json:"rules"`
	Version  string `json:"version"`
}

// apiBudget is one budget in the status: its settings and the most any scope used in its window.
type apiBudget struct {
	Error    string `json:"error,omitempty"` // "unavailable" when the count could not be read
	Match    string `json:"match"`
	Max      int    `json:"max"`
	MostUsed int    `json:"most_used"`
	Name     string `json:"name"`
	Per      string `json:"per"`
	Window   string `json:"window"`
}

// apiLeader is this replica's view of the leader lease.
type apiLeader struct {
	Leading bool   `json:"leading"`
	Replica string `json:"replica"`
	Token   int64  `json:"token"`
}

// apiReload is the outcome of the last (re)load of the rules.
type apiReload struct {
	At         time.Time `json:"at"`
	Error      string    `json:"error"`
	Successful bool      `json:"successful"`
}

// apiReady is GET /readyz: each check "ok" or a short reason.
type apiReady struct {
	Checks map[string]string `json:"checks"`
	Ready  bool              `json:"ready"`
}

// apiReloaded is POST /-/reload's answer.
type apiReloaded struct {
	// Changed are the keys the reload changed (config.Config.Changes), never their values.
	Changed  []string `json:"changed"`
	RuleHash string   `json:"rule_hash"`
	Rules    int      `json:"rules"`
	Status   string   `json:"status"` // "reloaded"
}

// apiDecision is the answer of POST /api/v1/actions/{id}/approve|deny; Replay is true when this
// approver had already decided the same way.
type apiDecision struct {
	Action *store.Action `json:"action"`
	Replay bool          `json:"replay"`
}

// apiDecisionConflict is the 409 of approve|deny: the action no longer awaits a decision.
type apiDecisionConflict struct {
	Action *store.Action `json:"action"`
	Error  string        `json:"error"`
}

// apiPause is the answer of POST /api/v1/pause and /api/v1/resume.
type apiPause struct {
	ConfigPaused bool             `json:"config_paused"`
	Pause        store.PauseState `json:"pause"`
	// Paused is what is in force: safety.paused in the config pauses this replica whatever the
	// row says.
	Paused bool `json:"paused"`
}

// apiBreaker is the answer of POST /api/v1/breakers/{handler}/{scope}/reset.
type apiBreaker struct {
	Handler string `json:"handler"`
	Scope   string `json:"scope"`
	State   string `json:"state"`
}

// apiReplayMissing is the 404 of POST /api/v1/dead-letters/replay: nothing was replayed.
type apiReplayMissing struct {
	Error   string  `json:"error"`
	Missing []int64 `json:"missing"`
}

// apiReplayed is the answer of POST /api/v1/dead-letters/replay: 200 with the items, or 503
// with Error and the items replayed before the failure.
type apiReplayed struct {
	Error string         `json:"error,omitempty"`
	Items []replayResult `json:"items"`
}

// apiAlreadyReplayed is the 409 of POST /api/v1/dead-letters/{id}/replay.
type apiAlreadyReplayed struct {
	DeadLetter *store.DeadLetter `json:"dead_letter"`
	Error      string            `json:"error"`
}

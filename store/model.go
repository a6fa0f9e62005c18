package store

import (
	"time"

	"github.com/responder-sre/responder/vocab"
)

// Incident is one episode of one alert matched by one rule: key (rule, fingerprint, starts_at).
type Incident struct {
	ID          int64               `json:"id"`
	Rule        string              `json:"rule"`
	Fingerprint string              `json:"fingerprint"`
	State       vocab.IncidentState `json:"state"`
	AlertName   string              `json:"alert_name"`
	Labels      map[string]string   `json:"labels"`
	StartsAt    time.Time           `json:"starts_at"`
	FiredAt     *time.Time          `json:"fired_at"`
	ResolvedAt  *time.Time          `json:"resolved_at"`
	LastSeenAt  time.Time           `json:"last_seen_at"`
	CreatedAt   time.Time           `json:"created_at"`
	UpdatedAt   time.Time           `json:"updated_at"`
	Version     string              `json:"version"`
	RuleHash    string              `json:"rule_hash"`
	// Drill is the run id of the drill whose alert this incident is (its responder_drill label);
	// "" when it is not a drill's.
	Drill string `json:"drill"`
	// ReceivedAt is when responder received the latest alert stored on the incident; nil if
	// unknown.
	ReceivedAt *time.Time `json:"received_at"`
	// Actions and Audit are filled by GetIncident only.
	Actions []Action     `json:"actions,omitempty"`
	Audit   []AuditEntry `json:"audit,omitempty"`
}

// Action is one planned or executed step of an incident: key (incident, phase, step).
type Action struct {
	ID         int64          `json:"id"`
	IncidentID int64          `json:"incident_id"`
	Phase      vocab.Phase    `json:"phase"`
	Step       int            `json:"step"`
	Rule       string         `json:"rule"`
	Handler    string         `json:"handler"`
	Target     string         `json:"target"`
	Scope      string         `json:"scope"`
	Class      vocab.Class    `json:"class"`
	Mode       vocab.Mode     `json:"mode"`
	Params     map[string]any `json:"params"`
	Approval   string         `json:"approval"`
	TimeoutMS  int64          `json:"timeout_ms"`
	State      vocab.State    `json:"state"`
	Reason     vocab.Reason   `json:"reason"`
	Attempt    int            `json:"attempt"`
	ApprovedBy string         `json:"approved_by"`
	Owner      string         `json:"owner"`
	LeaseUntil *time.Time     `json:"lease_until"`
	CreatedAt  time.Time      `json:"created_at"`
	BasisAt    time.Time      `json:"basis_at"`
	NotBefore  *time.Time     `json:"not_before"`
	StartedAt  *time.Time     `json:"started_at"`
	FinishedAt *time.Time     `json:"finished_at"`
	Error      string         `json:"error"`
	Result     string         `json:"result"`
	// ResultFields are the result fields its handler filled (handlers.Spec.Results), which later
	// steps of the rule may read as steps.<id>.result.<field>; null when none.
	ResultFields map[string]any `json:"result_fields"`
	// Evidence is what the handler said about the situation when the action was planned, for
	// the approver (handlers.Describer); "" for most actions.
	Evidence string `json:"evidence"`
	Version  string `json:"version"`
	RuleHash string `json:"rule_hash"`
	// VerifyDeadline is set when the action's handler succeeded and its rule's `verify` is
	// awaited (state verifying): by then the action becomes succeeded or failed (not_recovered).
	// It stays set on the outcome; nil for actions without verification.
	VerifyDeadline *time.Time `json:"verify_deadline"`
	// Drill is the run id of the drill its incident belongs to ("" when it is not a drill's).
	Drill string `json:"drill"`
}

// AuditEntry records one decision, refusals included.
type AuditEntry struct {
	ID         int64          `json:"id"`
	At         time.Time      `json:"at"`
	IncidentID *int64         `json:"incident_id"`
	ActionID   *int64         `json:"action_id"`
	Kind       string         `json:"kind"`
	Actor      string         `json:"actor"`
	Reason     string         `json:"reason"`
	Detail     map[string]any `json:"detail"`
	Version    string         `json:"version"`
	RuleHash   string         `json:"rule_hash"`
}

// DeadLetter is a bus message that could not be processed. Data is the message as stored on the
// bus; the API shows Size and a Preview of it.
type DeadLetter struct {
	ID          int64      `json:"id"`
	At          time.Time  `json:"created_at"`
	MsgID       string     `json:"msg_id"`
	Reason      string     `json:"reason"`
	Error       string     `json:"error"`
	Deliveries  int64      `json:"deliveries"`
	Size        int        `json:"size"`
	Preview     string     `json:"preview"`
	ReplayedAt  *time.Time `json:"replayed_at"`
	ReplayedBy  string     `json:"replayed_by"`
	ReplayMsgID string     `json:"replay_msg_id"`
	Data        []byte     `json:"-"`
}

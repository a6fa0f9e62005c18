// Package drill runs disaster-recovery drills against a running responder: it injects a fault
// (synthetic alerts through the intake path, or a command that breaks something real in a test
// environment), follows what responder does about it through the API, and reports the chain's
// timing (detect, decide, approve, act, recover) against the scenario's RTO.
package drill

import (
	"context"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

// Target is the responder a drill drives.
type Target interface {
	// Paused reports whether responder's kill switch is on (GET /api/v1/status .paused).
	Paused(ctx context.Context) (bool, error)
	// Start records a new run (POST /api/v1/drills); the run id marks its alerts.
	Start(ctx context.Context, s Start) (Run, error)
	// Send posts alerts to the intake path (POST /webhook/alertmanager, v4 payload); nil only
	// when every alert was accepted.
	Send(ctx context.Context, alerts []alert.Alert) error
	// Incidents returns the run's incidents with their actions and audit.
	Incidents(ctx context.Context, runID string) ([]Incident, error)
	// Approve approves an action of the run as the drill (POST /api/v1/drills/{run}/approve/{action}).
	Approve(ctx context.Context, run, actionID int64) error
	// Finish records the run's report (POST /api/v1/drills/{id}/finish).
	Finish(ctx context.Context, run int64, r Report) (Run, error)
}

// Start is what a run is started with.
type Start struct {
	Name     string
	Probes   []string
	PageReal bool
	RTO      time.Duration
}

// Run is the part of a drill run (the API's drill run object) the runner reads.
type Run struct {
	ID    int64  `json:"id"`
	RunID string `json:"run_id"`
	Name  string `json:"name"`
}

// Report is the outcome of one drill run. The times are seconds; the JSON field names are a
// contract (the API stores the report as posted, the CLI prints it).
type Report struct {
	Name           string  `json:"name"`
	RunID          string  `json:"run_id"`
	Passed         bool    `json:"passed"`
	RTOSeconds     float64 `json:"rto_seconds"`
	DetectSeconds  float64 `json:"detect_seconds"`
	DecideSeconds  float64 `json:"decide_seconds"`
	ApproveSeconds float64 `json:"approve_seconds"`
	ActSeconds     float64 `json:"act_seconds"`
	RecoverSeconds float64 `json:"recover_seconds"`
	Steps          []Step  `json:"steps"`
	// Failure says why the drill failed; "" when it passed.
	Failure    string    `json:"failure"`
	InjectedAt time.Time `json:"injected_at"`
	FinishedAt time.Time `json:"finished_at"`
}

// Step is one expectation of the scenario and the action that met it (or did not).
type Step struct {
	Rule     string      `json:"rule"`
	Handler  string      `json:"handler"`
	Expected vocab.State `json:"expected_state"`
	Met      bool        `json:"met"`
	// The matched action; ActionID 0 when none was planned.
	ActionID   int64        `json:"action_id"`
	IncidentID int64        `json:"incident_id"`
	State      vocab.State  `json:"state"`
	Reason     vocab.Reason `json:"reason"`
	Error      string       `json:"error"`
	ApprovedBy string       `json:"approved_by"`
	CreatedAt  *time.Time   `json:"created_at"`
	ApprovedAt *time.Time   `json:"approved_at"`
	StartedAt  *time.Time   `json:"started_at"`
	FinishedAt *time.Time   `json:"finished_at"`
	// RecoveredAt is when the step's verification saw the condition recover (a verify step).
	RecoveredAt    *time.Time `json:"recovered_at"`
	ApproveSeconds float64    `json:"approve_seconds"`
	ActSeconds     float64    `json:"act_seconds"`
}

// Incident is the part of the API's incident object (GET /api/v1/incidents/{id}) a drill reads.
type Incident struct {
	ID         int64               `json:"id"`
	Rule       string              `json:"rule"`
	State      vocab.IncidentState `json:"state"`
	Labels     map[string]string   `json:"labels"`
	StartsAt   time.Time           `json:"starts_at"`
	ResolvedAt *time.Time          `json:"resolved_at"`
	// ReceivedAt is when responder received the alert; nil when the server does not say.
	ReceivedAt *time.Time   `json:"received_at"`
	CreatedAt  time.Time    `json:"created_at"`
	Drill      string       `json:"drill"`
	Actions    []Action     `json:"actions"`
	Audit      []AuditEntry `json:"audit"`
}

// runID returns the drill run the incident belongs to: its drill field, else its label.
func (i *Incident) runID() string {
	if i.Drill != "" {
		return i.Drill
	}
	return i.Labels[alert.DrillLabel]
}

// Action is the part of the API's action object a drill reads.
type Action struct {
	ID             int64        `json:"id"`
	IncidentID     int64        `json:"incident_id"`
	Rule           string       `json:"rule"`
	Handler        string       `json:"handler"`
	Step           int          `json:"step"`
	Phase          vocab.Phase  `json:"phase"`
	State          vocab.State  `json:"state"`
	Reason         vocab.Reason `json:"reason"`
	Error          string       `json:"error"`
	ApprovedBy     string       `json:"approved_by"`
	CreatedAt      time.Time    `json:"created_at"`
	StartedAt      *time.Time   `json:"started_at"`
	FinishedAt     *time.Time   `json:"finished_at"`
	VerifyDeadline *time.Time   `json:"verify_deadline"`
}

// AuditEntry is the part of the API's audit entry a drill reads.
type AuditEntry struct {
	At       time.Time `json:"at"`
	ActionID *int64    `json:"action_id"`
	Kind     string    `json:"kind"`
	Reason   string    `json:"reason"`
	Actor    string    `json:"actor"`
}

// Audit kinds and reasons the timing reads.
const (
	auditApproval   = "approval"
	reasonRecovered = string(vocab.ReasonRecovered)
)

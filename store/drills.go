package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/responder-sre/responder/alert"
)

// Drill run triggers: who started a run.
const (
	// DrillTriggerCLI: `responder drill run` (through POST /api/v1/drills).
	DrillTriggerCLI = "cli"
	// DrillTriggerSchedule: a scenario's schedule, on the leader.
	DrillTriggerSchedule = "schedule"
)

// DrillTriggers lists every trigger (the drill_runs_trigger_check constraint allows exactly these).
var DrillTriggers = []string{DrillTriggerCLI, DrillTriggerSchedule}

// Audit reasons of a drill run (kind AuditDrill): started, then passed or failed; approved names
// who drove a drill's approval of one of its actions (the approval row names drill:<name>).
const (
	DrillStarted  = "started"
	DrillApproved = "approved"
	DrillPassed   = "passed"
	DrillFailed   = "failed"
)

// DrillRun is one run of a drill scenario. Its RunID is the value of the responder_drill label on
// every alert of the run.
type DrillRun struct {
	ID      int64  `json:"id"`
	RunID   string `json:"run_id"`
	Name    string `json:"name"`
	Trigger string `json:"trigger"` // "cli" | "schedule"
	// Actor is who started it: the API token or console user, or "schedule".
	Actor        string     `json:"actor"`
	ScheduledFor *time.Time `json:"scheduled_for"`
	// Probes are the probes that must detect an exec fault: while the run is unfinished, their
	// failing episodes are marked with its run id (ActiveDrillProbes). Never null.
	Probes     []string   `json:"probes"`
	PageReal   bool       `json:"page_real"`
	RTOSeconds float64    `json:"rto_seconds"`
	StartedAt  time.Time  `json:"started_at"`
	InjectedAt *time.Time `json:"injected_at"`
	FinishedAt *time.Time `json:"finished_at"`
	// Passed is null while the run is running.
	Passed         *bool    `json:"passed"`
	Failure        string   `json:"failure"`
	RecoverSeconds *float64 `json:"recover_seconds"`
	// Report is the drill's report (package drill's Report) as posted when it finished; GetDrillRun
	// fills it, lists leave it out.
	Report json.RawMessage `json:"report,omitempty"`
}

// Running reports whether the run has not finished.
func (r DrillRun) Running() bool { return r.FinishedAt == nil }

// NewDrillRun starts a run (StartDrillRun).
type NewDrillRun struct {
	Name    string
	Trigger string
	Actor   string
	// ScheduledFor is the schedule's slot the run is for (nil for the CLI): one run per slot.
	ScheduledFor *time.Time
	Probes       []string
	PageReal     bool
	RTO          time.Duration
	At           time.Time
}

// DrillFinish is how a run ended (FinishDrillRun).
type DrillFinish struct {
	Passed         bool
	Failure        string
	InjectedAt     *time.Time
	RecoverSeconds *float64
	// Report is the report's JSON, stored as is (nil: none).
	Report []byte
	At     time.Time
	Actor  string
}

// DrillFilter filters ListDrillRuns.
type DrillFilter struct {
	Name   string
	Limit  int
	Cursor string
}

const drillCols = `id, run_id, name, trigger, actor, scheduled_for, probes, page_real, rto_seconds, started_at,
       injected_at, finished_at, passed, failure, recover_seconds`

func scanDrillRun(r pgx.Row, d *DrillRun, extra ...any) error {
	err := r.Scan(append([]any{&d.ID, &d.RunID, &d.Name, &d.Trigger, &d.Actor, &d.ScheduledFor, &d.Probes, &d.PageReal,
		&d.RTOSeconds, &d.StartedAt, &d.InjectedAt, &d.FinishedAt, &d.Passed, &d.Failure, &d.RecoverSeconds}, extra...)...)
	if d.Probes == nil {
		d.Probes = []string{}
	}
	return err
}

// DrillRunID is the run id of a run of name started at at: <name>-<UTC 20060102T150405Z>-<4 hex>.
func DrillRunID(name string, at time.Time) string {
	var b [2]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return name + "-" + at.UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b[:])
}

// StartDrillRun records the start of a run and audits it (kind drill, reason started). It returns
// false, with the run that holds the slot, when a run of the same name was already started for
// n.ScheduledFor (another replica fired the same schedule slot): the caller must not run it.
func (s *Store) StartDrillRun(ctx context.Context, n NewDrillRun) (DrillRun, bool, error) {
	if n.Probes == nil {
		n.Probes = []string{}
	}
	for attempt := 0; ; attempt++ {
		d, started, err := s.startDrillRun(ctx, n)
		var pe *pgconn.PgError
		// Two runs of one name in one second drew the same 4 hex digits: draw again.
		if attempt < 3 && errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "drill_runs_run_id_key" {
			continue
		}
		return d, started, err
	}
}

func (s *Store) startDrillRun(ctx context.Context, n NewDrillRun) (DrillRun, bool, error) {
	var d DrillRun
	started := false
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		err := scanDrillRun(tx.QueryRow(ctx, `
INSERT INTO drill_runs (run_id, name, trigger, actor, scheduled_for, probes, page_real, rto_seconds, started_at, version)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
ON CONFLICT (name, scheduled_for) WHERE scheduled_for IS NOT NULL DO NOTHING
RETURNING `+drillCols, DrillRunID(n.Name, n.At), n.Name, n.Trigger, n.Actor, n.ScheduledFor, n.Probes, n.PageReal,
			n.RTO.Seconds(), n.At, s.version), &d)
		if errors.Is(err, pgx.ErrNoRows) {
			return scanDrillRun(tx.QueryRow(ctx, `SELECT `+drillCols+` FROM drill_runs WHERE name = $1 AND scheduled_for = $2`,
				n.Name, n.ScheduledFor), &d)
		}
		if err != nil {
			return fmt.Errorf("start drill run: %w", err)
		}
		started = true
		detail := map[string]any{"run_id": d.RunID, "name": d.Name, "trigger": d.Trigger, "probes": d.Probes,
			"page_real": d.PageReal, "rto_seconds": d.RTOSeconds}
		if d.ScheduledFor != nil {
			detail["scheduled_for"] = d.ScheduledFor.UTC().Format(time.RFC3339)
		}
		return s.AuditTx(ctx, tx, []AuditInsert{{At: n.At, Kind: AuditDrill, Actor: n.Actor, Reason: DrillStarted, Detail: detail}})
	})
	return d, started, err
}

// FinishDrillRun records how run id ended and audits it (kind drill, reason passed or failed). It
// is idempotent: a run already finished is returned unchanged (nothing is written). An unknown
// run is ErrNotFound.
func (s *Store) FinishDrillRun(ctx context.Context, id int64, f DrillFinish) (DrillRun, error) {
	var d DrillRun
	var report []byte
	if len(f.Report) > 0 {
		report = f.Report
	}
	err := s.InTx(ctx, func(tx pgx.Tx) error {
		err := scanDrillRun(tx.QueryRow(ctx, `
UPDATE drill_runs SET finished_at = $2, passed = $3, failure = $4, injected_at = $5, recover_seconds = $6, report = $7::json
 WHERE id = $1 AND finished_at IS NULL
RETURNING `+drillCols+`, report`, id, f.At, f.Passed, f.Failure, f.InjectedAt, f.RecoverSeconds, report), &d, &d.Report)
		if errors.Is(err, pgx.ErrNoRows) {
			return s.getDrillRunTx(ctx, tx, id, &d)
		}
		if err != nil {
			return fmt.Errorf("finish drill run %d: %w", id, err)
		}
		reason := DrillFailed
		if f.Passed {
			reason = DrillPassed
		}
		detail := map[string]any{"run_id": d.RunID, "name": d.Name, "failure": d.Failure}
		if d.RecoverSeconds != nil {
			detail["recover_seconds"] = *d.RecoverSeconds
		}
		return s.AuditTx(ctx, tx, []AuditInsert{{At: f.At, Kind: AuditDrill, Actor: f.Actor, Reason: reason, Detail: detail}})
	})
	return d, err
}

func (s *Store) getDrillRunTx(ctx context.Context, q pgx.Tx, id int64, d *DrillRun) error {
	err := scanDrillRun(q.QueryRow(ctx, `SELECT `+drillCols+`, report FROM drill_runs WHERE id = $1`, id), d, &d.Report)
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// GetDrillRun returns one run with its report, or ErrNotFound.
func (s *Store) GetDrillRun(ctx context.Context, id int64) (*DrillRun, error) {
	var d DrillRun
	err := scanDrillRun(s.pool.QueryRow(ctx, `SELECT `+drillCols+`, report FROM drill_runs WHERE id = $1`, id), &d, &d.Report)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return &d, nil
}

// ListDrillRuns returns a page of runs (without their reports), newest first, and the cursor of
// the next page.
func (s *Store) ListDrillRuns(ctx context.Context, f DrillFilter) ([]DrillRun, string, error) {
	limit, before, err := Page{Limit: f.Limit, Cursor: f.Cursor}.bounds()
	if err != nil {
		return nil, "", err
	}
	var w where
	if f.Name != "" {
		w.add("name = ?", f.Name)
	}
	if before > 0 {
		w.add("id < ?", before)
	}
	w.args = append(w.args, limit)
	rows, err := s.pool.Query(ctx, `SELECT `+drillCols+` FROM drill_runs`+w.String()+` ORDER BY id DESC LIMIT $`+strconv.Itoa(len(w.args)), w.args...)
	if err != nil {
		return nil, "", err
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DrillRun, error) {
		var d DrillRun
		err := scanDrillRun(r, &d)
		return d, err
	})
	if err != nil || len(items) == 0 {
		return []DrillRun{}, "", err
	}
	return items, nextCursor(len(items), limit, items[len(items)-1].ID), nil
}

// ActiveDrillProbes returns, for each probe a running drill lists, the run id of the newest
// unfinished run started within maxAge before now (an older unfinished run was abandoned: its
// runner died without finishing it). A run that started "after" now (another replica's clock is
// ahead) counts.
func (s *Store) ActiveDrillProbes(ctx context.Context, now time.Time, maxAge time.Duration) (map[string]string, error) {
	rows, err := s.pool.Query(ctx, `
SELECT p.probe, r.run_id
  FROM drill_runs r, unnest(r.probes) AS p(probe)
 WHERE r.finished_at IS NULL AND r.started_at > $1
 ORDER BY r.id`, now.Add(-maxAge))
	if err != nil {
		return nil, fmt.Errorf("active drill probes: %w", err)
	}
	out := map[string]string{}
	var probe, run string
	_, err = pgx.ForEachRow(rows, []any{&probe, &run}, func() error {
		out[probe] = run // newest last
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("active drill probes: %w", err)
	}
	return out, nil
}

// LatestDrillRuns returns the newest finished run of each drill name (without its report): the
// drill metrics are read from it.
func (s *Store) LatestDrillRuns(ctx context.Context) (map[string]DrillRun, error) {
	rows, err := s.pool.Query(ctx, `SELECT DISTINCT ON (name) `+drillCols+` FROM drill_runs
 WHERE finished_at IS NOT NULL ORDER BY name, finished_at DESC, id DESC`)
	if err != nil {
		return nil, fmt.Errorf("latest drill runs: %w", err)
	}
	items, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (DrillRun, error) {
		var d DrillRun
		err := scanDrillRun(r, &d)
		return d, err
	})
	if err != nil {
		return nil, fmt.Errorf("latest drill runs: %w", err)
	}
	out := make(map[string]DrillRun, len(items))
	for _, d := range items {
		out[d.Name] = d
	}
	return out, nil
}

// addDrill keeps the incidents of run id run (alias names the incidents table), written so that
// the partial expression index incidents_drill serves it. (Not add: the jsonb operator ? is not
// a placeholder.)
func (w *where) addDrill(alias, run string) {
	w.args = append(w.args, run)
	w.conds = append(w.conds, fmt.Sprintf(`%[1]s.labels ? '%[2]s' AND %[1]s.labels->>'%[2]s' = $%[3]d`, alias, alert.DrillLabel, len(w.args)))
}

// addDrillActions keeps the actions (aliased a) of run id run's incidents.
func (w *where) addDrillActions(run string) {
	w.args = append(w.args, run)
	w.conds = append(w.conds, fmt.Sprintf(`a.incident_id IN (SELECT d.id FROM incidents d WHERE d.labels ? '%[1]s' AND d.labels->>'%[1]s' = $%[2]d)`,
		alert.DrillLabel, len(w.args)))
}

// incidentSelect is the columns scanIncident reads, the incidents table aliased p ("" or "i."):
// incidentCols, then the run id its labels carry ("" for an incident not a drill's) and the
// receipt time of its latest alert.
func incidentSelect(p string) string {
	return prefixed(p, incidentCols) + `, ` + knownDrill(p) + `, (` + p + `alert->>'receivedAt')::timestamptz`
}

// knownDrill is the run id the labels of the incident aliased p ("" or "d.") name when the store
// started that run, else ”: a responder_drill label copied onto a real alert does not make it a
// drill's. The engine's guards read it with every claim (actionCols), so they trust the same runs.
func knownDrill(p string) string {
	return `CASE WHEN ` + p + `labels ? '` + alert.DrillLabel + `' THEN coalesce((SELECT r.run_id FROM drill_runs r WHERE r.run_id = ` +
		p + `labels->>'` + alert.DrillLabel + `'), '') ELSE '' END`
}

// actionDrill is the run id of an action's incident (aliased a; "" for an incident not a drill's).
// (knownDrill("d."), spelled out: actionCols is a constant.)
const actionDrill = `coalesce((SELECT CASE WHEN d.labels ? '` + alert.DrillLabel + `' THEN coalesce((SELECT r.run_id FROM drill_runs r
 WHERE r.run_id = d.labels->>'` + alert.DrillLabel + `'), '') ELSE '' END FROM incidents d WHERE d.id = a.incident_id), '')`

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/identity"
	"github.com/responder-sre/responder/store"
)

// Drills (issue 17): a drill run is a row (store.DrillRun). `responder drill run` starts one
// through the API, sends its alerts through the webhook, approves its own actions as
// drill:<name> (approve: auto) and posts its report when it ends; the API lists the runs and the
// metrics say how the latest run of each drill went.

// drillName is what a drill's name may be: it starts the run id, a label value of every alert
// of the run, and a metric label.
var drillName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Bounds of a drill start.
const (
	maxDrillProbes = 64
	// maxDrillReport bounds a finish's body: the report with its steps.
	maxDrillReport = 1 << 20
)

// drillStart is the body of POST /api/v1/drills.
type drillStart struct {
	Name       string   `json:"name"`
	Probes     []string `json:"probes"`
	PageReal   bool     `json:"page_real"`
	RTOSeconds float64  `json:"rto_seconds"`
}

// check returns what is wrong with a start ("" when nothing).
func (b drillStart) check() string {
	switch {
	case !drillName.MatchString(b.Name):
		return "name must be 1 to 63 letters, digits or ._- starting with a letter or digit"
	case b.RTOSeconds < 0 || math.IsInf(b.RTOSeconds, 0):
		return "rto_seconds must be a number of seconds, 0 or more"
	case len(b.Probes) > maxDrillProbes:
		return fmt.Sprintf("at most %d probes", maxDrillProbes)
	}
	for _, p := range b.Probes {
		if p == "" || len(p) > 128 {
			return "probes must be probe names"
		}
	}
	return ""
}

// drillReport is what the API reads of a finished drill's report (package drill's Report); the
// whole body is stored as posted.
type drillReport struct {
	Passed         bool      `json:"passed"`
	Failure        string    `json:"failure"`
	InjectedAt     time.Time `json:"injected_at"`
	RecoverSeconds *float64  `json:"recover_seconds"`
}

// callerName is who r comes from: the token's name (or the console user's); "api" for the
// shared admin token and --web.no-auth.
func callerName(r *http.Request) string {
	if p, ok := identity.FromContext(r.Context()); ok && p.Name != "" {
		return p.Name
	}
	return identity.LegacyAdminName
}

func (a *App) postDrill(w http.ResponseWriter, r *http.Request) {
	var b drillStart
	if r.ContentLength == 0 {
		writeError(w, http.StatusBadRequest, `a body is required: {"name": ..., "probes": [], "page_real": false, "rto_seconds": 300}`)
		return
	}
	if err := decodeOptional(r, &b); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if msg := b.check(); msg != "" {
		writeError(w, http.StatusBadRequest, msg)
		return
	}
	run, _, err := a.st.StartDrillRun(r.Context(), store.NewDrillRun{Name: b.Name, Trigger: store.DrillTriggerCLI, Actor: callerName(r),
		Probes: b.Probes, PageReal: b.PageReal, RTO: time.Duration(b.RTOSeconds * float64(time.Second)), At: a.o.Now()})
	if err != nil {
		a.apiError(w, err)
		return
	}
	a.log.Info("drill started", "drill", run.Name, "run_id", run.RunID, "by", run.Actor)
	writeJSON(w, http.StatusCreated, run)
}

func (a *App) listDrills(w http.ResponseWriter, r *http.Request) {
	p, err := page(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	items, next, err := a.st.ListDrillRuns(r.Context(), store.DrillFilter{Name: r.URL.Query().Get("name"), Limit: p.Limit, Cursor: p.Cursor})
	writeListOf(a, w, items, next, err)
}

func (a *App) getDrill(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	run, err := a.st.GetDrillRun(r.Context(), id)
	if err != nil {
		a.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// approveDrillAction approves an action of a running drill's incident as drill:<name> (via
// drill). 409: the run has finished, or the action is not one of the run's (its incident's
// responder_drill label is another run id, or none); a drill approves nothing else.
func (a *App) approveDrillAction(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	actionID, err := strconv.ParseInt(r.PathValue("action_id"), 10, 64)
	if err != nil || actionID <= 0 {
		writeError(w, http.StatusBadRequest, "action_id must be a positive integer")
		return
	}
	run, err := a.st.GetDrillRun(r.Context(), id)
	if err != nil {
		a.apiError(w, err)
		return
	}
	res, err := a.approveForDrill(r.Context(), run, actionID, callerName(r))
	var nd *notDrillError
	switch {
	case errors.As(err, &nd):
		writeJSON(w, http.StatusConflict, apiDecisionConflict{Error: nd.msg, Action: redacted(nd.action)})
		return
	case errors.Is(err, store.ErrNotAwaiting), errors.Is(err, store.ErrAnonymousApprover):
		writeJSON(w, http.StatusConflict, apiDecisionConflict{Error: err.Error(), Action: redacted(res.Action)})
		return
	case err != nil:
		a.apiError(w, err)
		return
	}
	a.eng.Kick()
	writeJSON(w, http.StatusOK, apiDecision{Replay: res.Replay, Action: redacted(res.Action)})
}

// notDrillError: a drill may not approve the action (its run has finished, or the action is
// not one of the run's).
type notDrillError struct {
	msg    string
	action *store.Action
}

func (e *notDrillError) Error() string { return e.msg }

// approveForDrill approves actionID as drill:<name> (via drill) for run, driven by actor (the
// API caller, or "schedule"): only an action of the run's incidents while the run is running
// (*notDrillError otherwise).
func (a *App) approveForDrill(ctx context.Context, run *store.DrillRun, actionID int64, actor string) (store.DecisionResult, error) {
	act, err := a.st.GetAction(ctx, actionID)
	if err != nil {
		return store.DecisionResult{}, err
	}
	switch {
	case !run.Running():
		return store.DecisionResult{}, &notDrillError{msg: "drill run " + run.RunID + " has finished", action: act}
	case act.Drill != run.RunID:
		return store.DecisionResult{}, &notDrillError{action: act,
			msg: fmt.Sprintf("action %d is not one of drill run %s's (its incident's drill: %q)", act.ID, run.RunID, act.Drill)}
	}
	approver := "drill:" + run.Name
	res, err := a.eng.Decide(ctx, actionID, approver, store.DecisionApprove, string(identity.ViaDrill))
	if err != nil {
		return res, err
	}
	if !res.Replay {
		// The approval row names drill:<name>; this one names who drove the drill.
		a.auditDrill(ctx, store.AuditInsert{At: a.o.Now(), IncidentID: act.IncidentID, ActionID: act.ID, Kind: store.AuditDrill,
			Actor: actor, Reason: store.DrillApproved, Detail: map[string]any{"run_id": run.RunID, "approver": approver}})
	}
	a.eng.Kick()
	return res, nil
}

// auditDrill writes an audit row about a drill, best effort (the decision is recorded already).
func (a *App) auditDrill(ctx context.Context, e store.AuditInsert) {
	if err := a.st.Audit(ctx, e); err != nil {
		a.log.Warn("could not audit a drill approval", "action", e.ActionID, "err", err)
	}
}

// finishDrill records a run's end from its report (the body, stored as posted) and sets the
// drill metrics. A run already finished is returned unchanged.
func (a *App) finishDrill(w http.ResponseWriter, r *http.Request) {
	id, err := pathID(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxDrillReport))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("the report may be at most %d bytes", maxDrillReport))
		return
	case err != nil:
		writeError(w, http.StatusBadRequest, "read the report: "+err.Error())
		return
	}
	var rep drillReport
	if err := json.Unmarshal(body, &rep); err != nil || !bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		if err == nil {
			err = errors.New("not an object")
		}
		writeError(w, http.StatusBadRequest, "the body must be the drill's report (a JSON object): "+err.Error())
		return
	}
	run, err := a.recordDrillFinish(r.Context(), id, rep, body, callerName(r))
	if err != nil {
		a.apiError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, run)
}

// recordDrillFinish records run id's end from its report (rep, read from body, which is stored
// as it is), by actor, and sets the drill metrics.
func (a *App) recordDrillFinish(ctx context.Context, id int64, rep drillReport, body []byte, actor string) (store.DrillRun, error) {
	f := store.DrillFinish{Passed: rep.Passed, Failure: rep.Failure, Report: body, At: a.o.Now(), Actor: actor}
	if !rep.InjectedAt.IsZero() {
		f.InjectedAt = &rep.InjectedAt
	}
	// A failed drill that never recovered reports 0: no recovery time, not an instant one.
	if rs := rep.RecoverSeconds; rs != nil && (*rs > 0 || rep.Passed) {
		f.RecoverSeconds = rs
	}
	run, err := a.st.FinishDrillRun(ctx, id, f)
	if err != nil {
		return run, err
	}
	a.drills.set(run)
	a.log.Info("drill finished", "drill", run.Name, "run_id", run.RunID, "passed", run.Passed != nil && *run.Passed, "failure", run.Failure)
	return run, nil
}

// drillMetrics are responder_drill_*{drill}: how the latest finished run of each drill went.
// They are set when a run finishes here and read from the store with the other database-backed
// gauges (gauges.go), so every replica serves the latest run whichever replica recorded it.
type drillMetrics struct {
	// interval is each scheduled drill's schedule interval, from the config (schedules): the
	// PrometheusRule's ResponderDrillOverdue compares the latest run's age with twice it.
	interval *prometheus.GaugeVec
	lastRun  *prometheus.GaugeVec
	success  *prometheus.GaugeVec
	recover  *prometheus.GaugeVec
}

func newDrillMetrics(reg prometheus.Registerer) drillMetrics {
	m := drillMetrics{
		interval: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "responder", Name: "drill_schedule_interval_seconds",
			Help: "Seconds between two slots of a scheduled drill (drills: schedule)."}, []string{"drill"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "responder", Name: "drill_last_run_timestamp_seconds",
			Help: "Unix time the latest run of a drill finished."}, []string{"drill"}),
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "responder", Name: "drill_success",
			Help: "Whether the latest run of a drill passed (1) or failed (0)."}, []string{"drill"}),
		recover: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "responder", Name: "drill_recover_seconds",
			Help: "Seconds from the fault's injection to recovery in the latest run of a drill (NaN: it did not recover)."}, []string{"drill"}),
	}
	reg.MustRegister(m.interval, m.lastRun, m.success, m.recover)
	return m
}

// schedules sets the interval of every scheduled drill of ds (and drops the others').
func (m drillMetrics) schedules(ds []config.Drill, now time.Time) {
	m.interval.Reset()
	for _, d := range ds {
		if d.Schedule == "" {
			continue
		}
		sched, err := cron.ParseStandard(d.Schedule)
		if err != nil {
			continue // validated at load
		}
		first := sched.Next(now)
		m.interval.WithLabelValues(d.Name).Set(sched.Next(first).Sub(first).Seconds())
	}
}

// set records a finished run (a running one is ignored).
func (m drillMetrics) set(run store.DrillRun) {
	if run.FinishedAt == nil || run.Passed == nil {
		return
	}
	m.lastRun.WithLabelValues(run.Name).Set(float64(run.FinishedAt.UnixNano()) / 1e9)
	ok := 0.0
	if *run.Passed {
		ok = 1
	}
	m.success.WithLabelValues(run.Name).Set(ok)
	rec := math.NaN()
	if run.RecoverSeconds != nil {
		rec = *run.RecoverSeconds
	}
	m.recover.WithLabelValues(run.Name).Set(rec)
}

// refresh sets the metrics from the latest finished run of each drill.
func (m drillMetrics) refresh(ctx context.Context, st *store.Store) error {
	latest, err := st.LatestDrillRuns(ctx)
	if err != nil {
		return err
	}
	for _, run := range latest {
		m.set(run)
	}
	return nil
}

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/drill"
	"github.com/responder-sre/responder/store"
)

// drillRecheck bounds how long the drill scheduler sleeps, so that a reload's new schedules
// are seen within it.
const drillRecheck = 30 * time.Second

// drillSchedule is one scheduled scenario and its next slot.
type drillSchedule struct {
	spec string
	next time.Time
}

// runDrillSchedule runs the drills: section's scheduled scenarios while this replica leads,
// one at a time, until ctx ends (leadership lost or shutdown). A slot is run once across
// replicas and leader changes: the run row is keyed by (name, slot), and a replica that finds
// the slot taken skips it. Slots missed while nobody led are not caught up: the next one runs,
// and ResponderDrillOverdue says a drill is late.
func (a *App) runDrillSchedule(ctx context.Context) error {
	plan := map[string]*drillSchedule{}
	for {
		wait := drillRecheck
		for _, d := range a.conf().Drills.Scenarios {
			if d.Schedule == "" {
				continue
			}
			due, next, err := a.drillSlot(plan, d)
			if err != nil {
				return err
			}
			if !due.IsZero() {
				a.runScheduledDrill(ctx, d, due)
			}
			wait = min(wait, next.Sub(a.o.Now()))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(max(wait, 10*time.Millisecond)):
		}
	}
}

// drillSlot returns d's slot that is due now (zero when none is) and its next slot. A new or
// changed schedule starts from now: its first slot is the next one.
func (a *App) drillSlot(plan map[string]*drillSchedule, d config.Drill) (due, next time.Time, err error) {
	sched, err := cron.ParseStandard(d.Schedule)
	if err != nil { // validated at load: only a bug gets here
		return time.Time{}, time.Time{}, fmt.Errorf("drill %s: schedule %q: %w", d.Name, d.Schedule, err)
	}
	now := a.o.Now().UTC() // schedules are in UTC
	p := plan[d.Name]
	if p == nil || p.spec != d.Schedule {
		p = &drillSchedule{spec: d.Schedule, next: sched.Next(now)}
		plan[d.Name] = p
	}
	if now.Before(p.next) {
		return time.Time{}, p.next, nil
	}
	due, p.next = p.next, sched.Next(now)
	return due, p.next, nil
}

// runScheduledDrill runs d for its slot unless another replica did.
func (a *App) runScheduledDrill(ctx context.Context, d config.Drill, slot time.Time) {
	slot = slot.UTC()
	run, created, err := a.st.StartDrillRun(ctx, store.NewDrillRun{Name: d.Name, Trigger: store.DrillTriggerSchedule,
		Actor: "schedule", ScheduledFor: &slot, Probes: d.Inject.Probes, PageReal: d.Page == config.DrillPageReal,
		RTO: d.RTO.D(), At: a.o.Now()})
	switch {
	case err != nil:
		a.log.Warn("could not start a scheduled drill", "drill", d.Name, "slot", slot, "err", err)
		return
	case !created:
		a.log.Debug("scheduled drill already run", "drill", d.Name, "slot", slot, "run_id", run.RunID)
		return
	}
	r := drill.Runner{Target: &localDrillTarget{a: a, run: run}, Now: a.o.Now,
		Log: a.o.Logger.With("component", "drill")}
	r.Run(ctx, d) // the runner logs and records the report
}

// localDrillTarget is a scheduled drill's Target: this replica, without HTTP. Its alerts take
// the intake path after the webhook (the limits, then the bus); its approvals and report go
// through the same code as the API's.
type localDrillTarget struct {
	a   *App
	run store.DrillRun // started by the scheduler for its slot
}

var _ drill.Target = (*localDrillTarget)(nil)

func (t *localDrillTarget) Paused(ctx context.Context) (bool, error) {
	ps, err := t.a.st.Pause(ctx)
	if err != nil {
		return false, err
	}
	return t.a.conf().Safety.Paused || ps.Active(t.a.o.Now()), nil
}

func (t *localDrillTarget) Start(context.Context, drill.Start) (drill.Run, error) {
	return drill.Run{ID: t.run.ID, RunID: t.run.RunID, Name: t.run.Name}, nil
}

func (t *localDrillTarget) Send(ctx context.Context, as []alert.Alert) error {
	now := t.a.o.Now()
	out := make([]alert.Alert, len(as))
	for i, al := range as {
		al.ReceivedAt = now
		if err := al.Validate(); err != nil {
			return err
		}
		out[i] = al
	}
	return t.a.publishWithinLimits(ctx, out)
}

func (t *localDrillTarget) Incidents(ctx context.Context, runID string) ([]drill.Incident, error) {
	incs, _, err := t.a.st.ListIncidents(ctx, store.IncidentFilter{Drill: runID, Page: store.Page{Limit: store.MaxLimit}})
	if err != nil {
		return nil, err
	}
	out := make([]drill.Incident, 0, len(incs))
	for _, inc := range incs {
		full, err := t.a.st.GetIncident(ctx, inc.ID)
		if err != nil {
			return nil, err
		}
		var di drill.Incident
		// The same JSON the API answers and drill.HTTPTarget reads.
		b, err := json.Marshal(full)
		if err == nil {
			err = json.Unmarshal(b, &di)
		}
		if err != nil {
			return nil, err
		}
		out = append(out, di)
	}
	return out, nil
}

func (t *localDrillTarget) Approve(ctx context.Context, _ int64, actionID int64) error {
	_, err := t.a.approveForDrill(ctx, &t.run, actionID, "schedule")
	return err
}

func (t *localDrillTarget) Finish(ctx context.Context, _ int64, r drill.Report) (drill.Run, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return drill.Run{}, err
	}
	rec := r.RecoverSeconds
	run, err := t.a.recordDrillFinish(ctx, t.run.ID, drillReport{Passed: r.Passed, Failure: r.Failure,
		InjectedAt: r.InjectedAt, RecoverSeconds: &rec}, body, "schedule")
	if err != nil {
		return drill.Run{}, err
	}
	return drill.Run{ID: run.ID, RunID: run.RunID, Name: run.Name}, nil
}

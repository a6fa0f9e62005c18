package drill

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os/exec"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/vocab"
)

// Defaults of a Runner and a scenario.
const (
	DefaultPoll = 500 * time.Millisecond
	// DefaultTimeoutSlack is added to the RTO when the scenario sets no timeout.
	DefaultTimeoutSlack = 2 * time.Minute
	// finishTimeout bounds recording the report when the run's context is already done.
	finishTimeout = 10 * time.Second
	// maxExecOutput bounds what an exec fault's output adds to its error.
	maxExecOutput = 4 << 10
)

// Runner runs drill scenarios against a Target.
type Runner struct {
	Target Target
	// Exec runs an exec fault's argv, bounded by ctx; nil: os/exec (never a shell).
	Exec func(ctx context.Context, argv []string) error
	// Now is the clock of the injection and the report; nil: time.Now.
	Now func() time.Time
	// Poll is how often the run's incidents are read; 0: DefaultPoll.
	Poll time.Duration
	// Log receives progress; nil: discarded.
	Log *slog.Logger
}

// run is the state of one drill run.
type run struct {
	r        *Runner
	d        config.Drill
	rep      Report
	run      Run
	alerts   []alert.Alert // the synthetic alerts sent (nil for exec)
	approved map[int64]bool
	resolved bool
	snap     []Incident // the last snapshot read
	lastErr  error      // the last error reading the incidents
}

// Run runs one scenario: it checks responder is not paused, starts a run, injects the fault,
// follows the actions until every expectation is met or failed or the timeout passes, and
// records the report (also when the drill fails). It never returns without a report.
func (r *Runner) Run(ctx context.Context, d config.Drill) Report {
	x := &run{r: r, d: d, approved: map[int64]bool{}}
	x.rep = Report{Name: d.Name, RTOSeconds: d.RTO.D().Seconds(), Steps: []Step{}}
	paused, err := r.Target.Paused(ctx)
	switch {
	case err != nil:
		return x.fail("status: %v", err)
	case paused:
		return x.fail("paused: responder is paused (kill switch on); a drill does not run while paused")
	}
	x.run, err = r.Target.Start(ctx, Start{Name: d.Name, Probes: d.Inject.Probes, PageReal: d.Page == config.DrillPageReal, RTO: d.RTO.D()})
	if err != nil {
		return x.fail("start: %v", err)
	}
	x.rep.RunID = x.run.RunID
	r.log().Info("drill started", "drill", d.Name, "run", x.run.RunID)

	wctx, cancel := context.WithTimeout(ctx, x.timeout())
	defer cancel()
	if err := x.inject(wctx); err != nil {
		x.failf("inject: %v", err)
	} else {
		x.follow(wctx)
	}
	return x.finish(ctx)
}

func (r *Runner) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Runner) now() time.Time {
	if r.Now == nil {
		return time.Now()
	}
	return r.Now()
}

// timeout is the scenario's, else its RTO plus DefaultTimeoutSlack.
func (x *run) timeout() time.Duration {
	if x.d.Timeout > 0 {
		return x.d.Timeout.D()
	}
	return x.d.RTO.D() + DefaultTimeoutSlack
}

// fail ends a run that was never started.
func (x *run) fail(format string, args ...any) Report {
	x.failf(format, args...)
	x.rep.FinishedAt = x.r.now()
	x.r.log().Warn("drill failed", "drill", x.d.Name, "failure", x.rep.Failure)
	return x.rep
}

// failf records the first failure (the cause, not its consequences).
func (x *run) failf(format string, args ...any) {
	x.rep.Passed = false
	if x.rep.Failure == "" {
		x.rep.Failure = fmt.Sprintf(format, args...)
	}
}

// inject sends the synthetic alerts or runs the exec fault, and records when.
func (x *run) inject(ctx context.Context) error {
	in := x.d.Inject
	x.rep.InjectedAt = x.r.now()
	if len(in.Exec) > 0 {
		run := x.r.Exec
		if run == nil {
			run = execArgv
		}
		x.r.log().Info("drill injects a fault", "drill", x.d.Name, "run", x.run.RunID, "exec", in.Exec[0])
		return run(ctx, in.Exec)
	}
	x.alerts = make([]alert.Alert, 0, len(in.Alerts))
	for _, a := range in.Alerts {
		labels := maps.Clone(a.Labels)
		labels[alert.DrillLabel] = x.run.RunID
		if x.d.Page == config.DrillPageReal {
			labels[alert.DrillPageLabel] = "real"
		}
		x.alerts = append(x.alerts, alert.Alert{
			Name: labels["alertname"], Source: alert.SourceAlertmanager, Status: alert.StatusFiring,
			Labels: labels, Annotations: maps.Clone(a.Annotations), StartsAt: x.rep.InjectedAt,
			Fingerprint: alert.Fingerprint(labels),
		})
	}
	x.r.log().Info("drill injects alerts", "drill", x.d.Name, "run", x.run.RunID, "alerts", len(x.alerts))
	return x.r.Target.Send(ctx, x.alerts)
}

// execArgv runs argv without a shell, bounded by ctx; its error carries the end of its output.
func execArgv(ctx context.Context, argv []string) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err == nil {
		return nil
	}
	msg := strings.TrimSpace(out.String())
	if len(msg) > maxExecOutput {
		msg = "…" + msg[len(msg)-maxExecOutput:]
	}
	if msg != "" {
		return fmt.Errorf("%s: %w: %s", argv[0], err, msg)
	}
	return fmt.Errorf("%s: %w", argv[0], err)
}

// follow polls the run's incidents until every expectation is met or one failed, approving
// and resolving as the scenario says, or until ctx ends (the timeout).
func (x *run) follow(ctx context.Context) {
	poll := x.r.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			x.timedOut(ctx)
			return
		case <-t.C:
		}
		if x.step(ctx) {
			return
		}
		t.Reset(poll)
	}
}

// step reads a snapshot and acts on it; true when the run is decided.
func (x *run) step(ctx context.Context) bool {
	incs, err := x.r.Target.Incidents(ctx, x.run.RunID)
	if err != nil {
		if ctx.Err() == nil {
			x.lastErr = err
			x.r.log().Warn("drill: reading incidents failed; retrying", "drill", x.d.Name, "run", x.run.RunID, "err", err)
		}
		return false
	}
	x.snap, x.lastErr = incs, nil
	steps := match(x.d.Expect, incs)
	if failed := firstFailed(steps); failed != "" {
		x.failf("%s", failed)
		return true
	}
	if x.d.Resolve && !x.resolved && handlersDone(steps) {
		x.resolve(ctx)
	}
	if allMet(steps) && (x.resolved || !x.d.Resolve) {
		return true
	}
	if x.d.Approve != config.DrillApproveWait {
		x.approve(ctx, incs)
	}
	return false
}

// approve approves every action of the run awaiting approval, once each.
func (x *run) approve(ctx context.Context, incs []Incident) {
	for _, inc := range incs {
		for _, a := range inc.Actions {
			if a.State != vocab.StateAwaitingApproval || x.approved[a.ID] {
				continue
			}
			if err := x.r.Target.Approve(ctx, x.run.ID, a.ID); err != nil {
				x.r.log().Warn("drill: approving failed; retrying", "drill", x.d.Name, "action", a.ID, "err", err)
				continue
			}
			x.approved[a.ID] = true
			x.r.log().Info("drill approved", "drill", x.d.Name, "action", a.ID, "rule", a.Rule, "handler", a.Handler)
		}
	}
}

// resolve sends the resolved versions of the synthetic alerts; a failed send is retried at the
// next poll.
func (x *run) resolve(ctx context.Context) {
	end := x.r.now()
	res := make([]alert.Alert, len(x.alerts))
	for i, a := range x.alerts {
		a.Status, a.EndsAt = alert.StatusResolved, end
		res[i] = a
	}
	if err := x.r.Target.Send(ctx, res); err != nil {
		x.r.log().Warn("drill: sending the resolve failed; retrying", "drill", x.d.Name, "err", err)
		return
	}
	x.resolved = true
	x.r.log().Info("drill resolved its alerts", "drill", x.d.Name, "run", x.run.RunID)
}

// timedOut explains what was still missing when the timeout passed.
func (x *run) timedOut(ctx context.Context) {
	what := "timeout"
	if errors.Is(context.Cause(ctx), context.Canceled) {
		what = "cancelled"
	}
	msg := fmt.Sprintf("%s after %s: %s", what, x.timeout(), pending(match(x.d.Expect, x.snap)))
	if x.d.Resolve && !x.resolved {
		msg += "; the resolve of the drill's alerts was not sent"
	}
	if x.lastErr != nil {
		msg += fmt.Sprintf(" (last error reading incidents: %v)", x.lastErr)
	}
	x.failf("%s", msg)
}

// finish computes the timing from the last snapshot, decides and records the report.
func (x *run) finish(ctx context.Context) Report {
	steps := match(x.d.Expect, x.snap)
	x.rep.Steps = steps
	x.timing(steps)
	if x.rep.Failure == "" {
		x.rep.Passed = true
		if rto := x.d.RTO.D().Seconds(); x.rep.RecoverSeconds > rto {
			x.failf("recover %s exceeds rto %s", secs(x.rep.RecoverSeconds), secs(rto))
		}
	}
	x.rep.FinishedAt = x.r.now()
	fctx := ctx
	if ctx.Err() != nil {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), finishTimeout)
		defer cancel()
	}
	if _, err := x.r.Target.Finish(fctx, x.run.ID, x.rep); err != nil {
		x.r.log().Warn("drill: recording the report failed", "drill", x.d.Name, "run", x.run.RunID, "err", err)
	}
	x.r.log().Info("drill finished", "drill", x.d.Name, "run", x.run.RunID, "passed", x.rep.Passed,
		"recover_seconds", x.rep.RecoverSeconds, "failure", x.rep.Failure)
	return x.rep
}

// secs formats seconds as a duration ("4.2s").
func secs(s float64) string {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond).String()
}

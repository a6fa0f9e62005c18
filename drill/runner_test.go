package drill

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/vocab"
)

const testRunID = "api-down-20250102T030405Z-beef"

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func at(s float64) *time.Time {
	t := t0.Add(time.Duration(s * float64(time.Second)))
	return &t
}

func id(n int64) *int64 { return &n }

// frame is one snapshot of the run's incidents; the fake serves it until `until` holds (nil:
// for one read), then the next (the last one forever).
type frame struct {
	incs  []Incident
	until func(f *fakeTarget) bool
	err   error
}

// fakeTarget is an in-memory Target playing a script of snapshots and recording what the
// runner did.
type fakeTarget struct {
	mu       sync.Mutex
	paused   bool
	startErr error
	sendErr  error
	script   []frame
	pos      int
	reads    int
	starts   []Start
	sent     [][]alert.Alert
	approved []int64
	finished []Report
}

func (f *fakeTarget) Paused(context.Context) (bool, error) { return f.paused, nil }

func (f *fakeTarget) Start(_ context.Context, s Start) (Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, s)
	return Run{ID: 7, RunID: testRunID, Name: s.Name}, f.startErr
}

func (f *fakeTarget) Send(_ context.Context, as []alert.Alert) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sent = append(f.sent, as)
	return f.sendErr
}

func (f *fakeTarget) Incidents(_ context.Context, runID string) ([]Incident, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if runID != testRunID || len(f.script) == 0 {
		return nil, errors.New("unknown run")
	}
	f.reads++
	fr := f.script[f.pos]
	if f.pos < len(f.script)-1 && (fr.until == nil || fr.until(f)) {
		f.pos++
	}
	return fr.incs, fr.err
}

func (f *fakeTarget) Approve(_ context.Context, run, actionID int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if run != 7 {
		return errors.New("wrong run")
	}
	f.approved = append(f.approved, actionID)
	return nil
}

func (f *fakeTarget) Finish(ctx context.Context, run int64, r Report) (Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ctx.Err() != nil {
		return Run{}, ctx.Err()
	}
	f.finished = append(f.finished, r)
	return Run{ID: run, RunID: r.RunID}, nil
}

// incident builds the run's incident received 0.5s after the injection with the given actions.
func incident(acts ...Action) Incident {
	inc := Incident{ID: 3, Rule: "target-down-hook", State: vocab.IncidentFiring, StartsAt: t0, ReceivedAt: at(0.5),
		CreatedAt: *at(0.6), Drill: testRunID, Labels: map[string]string{"alertname": "TargetDown", alert.DrillLabel: testRunID}}
	for i := range acts {
		acts[i].IncidentID = inc.ID
		if acts[i].Rule == "" {
			acts[i].Rule, acts[i].Handler = "target-down-hook", "http.request"
		}
	}
	inc.Actions = acts
	return inc
}

func action(state vocab.State, started, finished *time.Time) Action {
	return Action{ID: 11, State: state, CreatedAt: *at(0.7), StartedAt: started, FinishedAt: finished}
}

func scenario(mut ...func(*config.Drill)) config.Drill {
	d := config.Drill{
		Name: "api-down", RTO: config.Duration(5 * time.Second), Timeout: config.Duration(5 * time.Second),
		Inject: config.DrillInject{Alerts: []config.DrillAlert{{Labels: map[string]string{"alertname": "TargetDown", "job": "api"}}}},
		Expect: []config.DrillExpect{{Rule: "target-down-hook", Handler: "http.request", State: vocab.StateSucceeded}},
	}
	for _, m := range mut {
		m(&d)
	}
	return d
}

func runner(f *fakeTarget) *Runner {
	return &Runner{Target: f, Now: func() time.Time { return t0 }, Poll: time.Millisecond}
}

// checkFinished: the report returned is the one recorded, exactly once.
func checkFinished(t *testing.T, f *fakeTarget, rep Report) {
	t.Helper()
	if len(f.finished) != 1 {
		t.Fatalf("Finish called %d times, want 1", len(f.finished))
	}
	if diff := cmp.Diff(rep, f.finished[0]); diff != "" {
		t.Errorf("recorded report differs from the returned one (-returned +recorded):\n%s", diff)
	}
}

func TestRunPasses(t *testing.T) {
	f := &fakeTarget{script: []frame{
		{},
		{incs: []Incident{incident(action(vocab.StateRunning, at(1), nil))}},
		{incs: []Incident{incident(action(vocab.StateSucceeded, at(1), at(3.25)))}},
	}}
	rep := runner(f).Run(context.Background(), scenario(func(d *config.Drill) { d.Page = config.DrillPageReal }))
	if !rep.Passed || rep.Failure != "" {
		t.Fatalf("drill failed: %+v", rep)
	}
	got := []float64{rep.RTOSeconds, rep.DetectSeconds, rep.DecideSeconds, rep.ApproveSeconds, rep.ActSeconds, rep.RecoverSeconds}
	if want := []float64{5, 0.5, 0.2, 0, 2.25, 3.25}; !cmp.Equal(got, want) {
		t.Errorf("rto, detect, decide, approve, act, recover = %v, want %v", got, want)
	}
	if rep.RunID != testRunID || !rep.InjectedAt.Equal(t0) || len(rep.Steps) != 1 || !rep.Steps[0].Met || rep.Steps[0].ActionID != 11 {
		t.Errorf("report = %+v", rep)
	}
	if len(f.starts) != 1 || !f.starts[0].PageReal || f.starts[0].RTO != 5*time.Second || f.starts[0].Name != "api-down" {
		t.Errorf("start = %+v", f.starts)
	}
	if len(f.sent) != 1 || len(f.sent[0]) != 1 {
		t.Fatalf("sent = %+v", f.sent)
	}
	a := f.sent[0][0]
	wantLabels := map[string]string{"alertname": "TargetDown", "job": "api", alert.DrillLabel: testRunID, alert.DrillPageLabel: "real"}
	if !cmp.Equal(a.Labels, wantLabels) || a.Status != alert.StatusFiring || !a.StartsAt.Equal(t0) || !a.EndsAt.IsZero() {
		t.Errorf("injected alert = %+v", a)
	}
	checkFinished(t, f, rep)
}

func TestRunFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []frame
		mut    func(*config.Drill)
		want   string
		steps  bool // the steps name the action
	}{
		{"rto exceeded", []frame{{incs: []Incident{incident(action(vocab.StateSucceeded, at(1), at(4.2)))}}},
			func(d *config.Drill) { d.RTO = config.Duration(time.Second) }, "recover 4.2s exceeds rto 1s", true},
		{"wrong final state", []frame{{incs: []Incident{incident(Action{ID: 11, State: vocab.StateFailed, Reason: vocab.ReasonTimeout,
			Error: "POST http://hook: deadline exceeded", CreatedAt: *at(1), StartedAt: at(1), FinishedAt: at(2)})}}},
			nil, "expect[0] target-down-hook/http.request: action 11 ended failed (timeout): POST http://hook: deadline exceeded, want succeeded", true},
		{"skipped while paused", []frame{{incs: []Incident{incident(Action{ID: 11, State: vocab.StateSkipped, Reason: vocab.ReasonPaused, CreatedAt: *at(1)})}}},
			nil, "action 11 ended skipped (paused)", true},
		{"timeout", []frame{{}}, func(d *config.Drill) { d.Timeout = config.Duration(30 * time.Millisecond) },
			"timeout after 30ms: expect[0] target-down-hook/http.request: no such action", false},
		{"timeout waiting", []frame{{incs: []Incident{incident(action(vocab.StateRunning, at(1), nil))}}},
			func(d *config.Drill) { d.Timeout = config.Duration(30 * time.Millisecond) },
			"timeout after 30ms: expect[0] target-down-hook/http.request: action 11 is running, want succeeded", true},
		{"timeout with read errors", []frame{{err: errors.New("connection refused")}},
			func(d *config.Drill) { d.Timeout = config.Duration(30 * time.Millisecond) },
			"(last error reading incidents: connection refused)", false},
		{"default timeout is rto + 2m", []frame{{}}, func(d *config.Drill) { d.Timeout, d.RTO = 0, config.Duration(-2*time.Minute+30*time.Millisecond) },
			"timeout after 30ms", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeTarget{script: tc.script}
			d := scenario()
			if tc.mut != nil {
				tc.mut(&d)
			}
			rep := runner(f).Run(context.Background(), d)
			if rep.Passed || !strings.Contains(rep.Failure, tc.want) {
				t.Fatalf("passed=%v failure=%q, want it to contain %q", rep.Passed, rep.Failure, tc.want)
			}
			if tc.steps && rep.Steps[0].ActionID != 11 {
				t.Errorf("steps = %+v", rep.Steps)
			}
			checkFinished(t, f, rep)
		})
	}
}

func TestRunPaused(t *testing.T) {
	f := &fakeTarget{paused: true, script: []frame{{}}}
	rep := runner(f).Run(context.Background(), scenario())
	if rep.Passed || !strings.HasPrefix(rep.Failure, "paused: ") {
		t.Fatalf("report = %+v", rep)
	}
	if len(f.starts)+len(f.sent)+len(f.finished) != 0 {
		t.Errorf("a paused drill started %d, sent %d, finished %d", len(f.starts), len(f.sent), len(f.finished))
	}
}

func TestRunStartAndInjectErrors(t *testing.T) {
	f := &fakeTarget{startErr: errors.New("HTTP 403: forbidden"), script: []frame{{}}}
	if rep := runner(f).Run(context.Background(), scenario()); rep.Passed || rep.Failure != "start: HTTP 403: forbidden" || len(f.sent) != 0 {
		t.Errorf("start error: %+v, sent %d", rep, len(f.sent))
	}
	f = &fakeTarget{sendErr: errors.New("HTTP 401: missing or invalid bearer token"), script: []frame{{}}}
	rep := runner(f).Run(context.Background(), scenario())
	if rep.Passed || rep.Failure != "inject: HTTP 401: missing or invalid bearer token" {
		t.Errorf("send error: %+v", rep)
	}
	checkFinished(t, f, rep)
}

func TestRunApprove(t *testing.T) {
	awaiting := Action{ID: 11, State: vocab.StateAwaitingApproval, CreatedAt: *at(0.7)}
	other := Action{ID: 12, Rule: "other", Handler: "page.slack", State: vocab.StateAwaitingApproval, CreatedAt: *at(0.8)}
	done := action(vocab.StateSucceeded, at(2), at(2.5))
	done.ApprovedBy = "drill:api-down"
	inc := incident(done)
	inc.Audit = []AuditEntry{
		{At: *at(0.9), ActionID: id(11), Kind: "action", Reason: "awaiting_approval"},
		{At: *at(1.7), ActionID: id(11), Kind: auditApproval, Reason: "approved", Actor: "drill:api-down"},
	}
	for _, tc := range []struct {
		approve  config.DrillApprove
		approved []int64
	}{
		{"", []int64{11, 12}},
		{config.DrillApproveAuto, []int64{11, 12}},
		{config.DrillApproveWait, nil},
	} {
		t.Run(string(tc.approve), func(t *testing.T) {
			f := &fakeTarget{script: []frame{
				{incs: []Incident{incident(awaiting, other)}, until: func(f *fakeTarget) bool { return f.reads >= 3 }},
				{incs: []Incident{incident(awaiting, other)}},
				{incs: []Incident{inc}},
			}}
			rep := runner(f).Run(context.Background(), scenario(func(d *config.Drill) { d.Approve = tc.approve }))
			if !rep.Passed {
				t.Fatalf("report = %+v", rep)
			}
			if !cmp.Equal(f.approved, tc.approved) {
				t.Errorf("approved %v, want %v (each once)", f.approved, tc.approved)
			}
			if rep.ApproveSeconds != 1 || rep.Steps[0].ApproveSeconds != 1 || !rep.Steps[0].ApprovedAt.Equal(*at(1.7)) || rep.Steps[0].ApprovedBy != "drill:api-down" {
				t.Errorf("approve timing: %v, step %+v", rep.ApproveSeconds, rep.Steps[0])
			}
			checkFinished(t, f, rep)
		})
	}
}

func TestRunResolve(t *testing.T) {
	verifying := action(vocab.StateVerifying, at(1), at(2))
	verifying.VerifyDeadline = at(60)
	recovered := verifying
	recovered.State, recovered.Reason = vocab.StateSucceeded, vocab.ReasonRecovered
	inc := incident(recovered)
	inc.State, inc.ResolvedAt = vocab.IncidentResolved, at(6)
	inc.Audit = []AuditEntry{{At: *at(4.5), ActionID: id(11), Kind: "action", Reason: "recovered"}}
	resolvedSent := func(f *fakeTarget) bool { return len(f.sent) == 2 }
	f := &fakeTarget{script: []frame{
		{incs: []Incident{incident(action(vocab.StateRunning, at(1), nil))}},
		{incs: []Incident{incident(verifying)}, until: resolvedSent},
		{incs: []Incident{inc}},
	}}
	rep := runner(f).Run(context.Background(), scenario(func(d *config.Drill) { d.Resolve = true }))
	if !rep.Passed {
		t.Fatalf("report = %+v", rep)
	}
	if len(f.sent) != 2 {
		t.Fatalf("sent %d batches, want the firing and the resolved", len(f.sent))
	}
	fire, res := f.sent[0][0], f.sent[1][0]
	if res.Status != alert.StatusResolved || !res.EndsAt.Equal(t0) || !cmp.Equal(res.Labels, fire.Labels) || !res.StartsAt.Equal(fire.StartsAt) || res.Fingerprint != fire.Fingerprint {
		t.Errorf("resolve = %+v, firing = %+v", res, fire)
	}
	if rep.RecoverSeconds != 4.5 || !rep.Steps[0].RecoveredAt.Equal(*at(4.5)) || rep.ActSeconds != 1 {
		t.Errorf("recover = %v (want 4.5, from the recovered audit), act %v, step %+v", rep.RecoverSeconds, rep.ActSeconds, rep.Steps[0])
	}

	// A step without verify is met when it succeeds; the resolve is still sent.
	f = &fakeTarget{script: []frame{{incs: []Incident{incident(action(vocab.StateSucceeded, at(1), at(2)))}}}}
	rep = runner(f).Run(context.Background(), scenario(func(d *config.Drill) { d.Resolve = true }))
	if !rep.Passed || len(f.sent) != 2 || f.sent[1][0].Status != alert.StatusResolved {
		t.Errorf("resolve after a plain step: %+v, sent %d", rep, len(f.sent))
	}
	// A resolve that cannot be sent is retried until the timeout, and said.
	f = &fakeTarget{script: []frame{{incs: []Incident{incident(action(vocab.StateSucceeded, at(1), at(2)))}}}}
	failing := &failingResolve{fakeTarget: f}
	r := runner(f)
	r.Target = failing
	rep = r.Run(context.Background(), scenario(func(d *config.Drill) { d.Resolve, d.Timeout = true, config.Duration(30*time.Millisecond) }))
	if rep.Passed || !strings.Contains(rep.Failure, "every expectation met; the resolve of the drill's alerts was not sent") || failing.resolves < 2 {
		t.Errorf("failing resolve: %q after %d tries", rep.Failure, failing.resolves)
	}

	// Without the audit entry the incident's resolve is the recovery.
	inc.Audit = nil
	f = &fakeTarget{script: []frame{{incs: []Incident{incident(verifying)}, until: resolvedSent}, {incs: []Incident{inc}}}}
	rep = runner(f).Run(context.Background(), scenario(func(d *config.Drill) { d.Resolve, d.RTO = true, config.Duration(10*time.Second) }))
	if !rep.Passed || rep.RecoverSeconds != 6 {
		t.Errorf("recover without the audit = %v, want 6 (resolved_at): %+v", rep.RecoverSeconds, rep)
	}
}

func TestRunExec(t *testing.T) {
	exe := func(d *config.Drill) {
		d.Inject = config.DrillInject{Exec: []string{"pg_ctl", "stop"}, Probes: []string{"pg-primary"}}
	}
	probeInc := incident(action(vocab.StateSucceeded, at(3), at(4)))
	probeInc.StartsAt, probeInc.ReceivedAt, probeInc.CreatedAt = *at(2), at(2.1), *at(2.2)
	probeInc.Actions[0].CreatedAt = *at(2.3)
	var ran []string
	f := &fakeTarget{script: []frame{{incs: []Incident{probeInc}}}}
	r := runner(f)
	r.Exec = func(_ context.Context, argv []string) error { ran = argv; return nil }
	rep := r.Run(context.Background(), scenario(exe))
	if !rep.Passed || rep.DetectSeconds != 2 || rep.DecideSeconds != 0.2 || rep.RecoverSeconds != 4 {
		t.Errorf("exec drill: %+v", rep)
	}
	// received_at is the latest receipt: a probe's repeat after the incident opened is not when
	// it was received; the incident's opening is.
	repeat := probeInc
	repeat.ReceivedAt = at(3.5)
	rr := runner(&fakeTarget{script: []frame{{incs: []Incident{repeat}}}})
	rr.Exec = func(context.Context, []string) error { return nil }
	if rep := rr.Run(context.Background(), scenario(exe)); rep.DecideSeconds != 0.1 {
		t.Errorf("decide with a repeated probe alert = %v, want 0.1 (from the incident's opening)", rep.DecideSeconds)
	}
	if !cmp.Equal(ran, []string{"pg_ctl", "stop"}) || len(f.sent) != 0 || !cmp.Equal(f.starts[0].Probes, []string{"pg-primary"}) {
		t.Errorf("ran %v, sent %d, start %+v", ran, len(f.sent), f.starts)
	}

	if _, err := exec.LookPath("false"); err != nil {
		t.Fatal("false(1) is missing: apt-get install -y coreutils")
	}
	for _, tc := range []struct {
		argv []string
		want string
	}{
		{[]string{"false"}, "inject: false: exit status 1"},
		{[]string{"sh", "-c", "echo cannot stop >&2; exit 3"}, "inject: sh: exit status 3: cannot stop"},
		{[]string{"/nonexistent/responder-drill-fault"}, "no such file or directory"},
	} {
		f := &fakeTarget{script: []frame{{}}}
		d := scenario(exe)
		d.Inject.Exec = tc.argv
		rep := runner(f).Run(context.Background(), d)
		if rep.Passed || !strings.Contains(rep.Failure, tc.want) {
			t.Errorf("%v: failure %q, want %q", tc.argv, rep.Failure, tc.want)
		}
		checkFinished(t, f, rep)
	}
}

func TestRunExecBoundedByTimeout(t *testing.T) {
	if _, err := exec.LookPath("sleep"); err != nil {
		t.Fatal("sleep(1) is missing: apt-get install -y coreutils")
	}
	f := &fakeTarget{script: []frame{{}}}
	d := scenario(func(d *config.Drill) {
		d.Inject = config.DrillInject{Exec: []string{"sleep", "30"}, Probes: []string{"p"}}
		d.Timeout = config.Duration(50 * time.Millisecond)
	})
	start := time.Now()
	rep := runner(f).Run(context.Background(), d)
	if rep.Passed || !strings.Contains(rep.Failure, "inject: sleep: signal: killed") || time.Since(start) > 10*time.Second {
		t.Errorf("failure %q after %s", rep.Failure, time.Since(start))
	}
	checkFinished(t, f, rep)
}

func TestRunCancelledStillFinishes(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeTarget{script: []frame{{until: func(*fakeTarget) bool { cancel(); return true }}, {}}}
	rep := runner(f).Run(ctx, scenario())
	if rep.Passed || !strings.HasPrefix(rep.Failure, "cancelled after 5s") {
		t.Errorf("failure = %q", rep.Failure)
	}
	checkFinished(t, f, rep)
}

func TestMatchInOrder(t *testing.T) {
	expect := []config.DrillExpect{
		{Rule: "r", Handler: "k8s.restart_pod", State: vocab.StateSucceeded},
		{Rule: "r", Handler: "page.slack", State: vocab.StateDryRun},
		{Rule: "r", Handler: "k8s.restart_pod", State: vocab.StateSucceeded},
	}
	acts := []Action{
		{ID: 5, Rule: "r", Handler: "k8s.restart_pod", State: vocab.StateFailed, CreatedAt: *at(2)},
		{ID: 4, Rule: "r", Handler: "k8s.restart_pod", State: vocab.StateSucceeded, CreatedAt: *at(1)},
		{ID: 3, Rule: "r", Handler: "page.slack", State: vocab.StateDryRun, CreatedAt: *at(2)},
		{ID: 2, Rule: "other", Handler: "k8s.restart_pod", State: vocab.StateSucceeded, CreatedAt: *at(0)},
	}
	steps := match(expect, []Incident{{ID: 1, Actions: acts}})
	var ids []int64
	for _, s := range steps {
		ids = append(ids, s.ActionID)
	}
	if !cmp.Equal(ids, []int64{4, 3, 5}) {
		t.Fatalf("matched %v, want [4 3 5] (created_at, then id; each action once)", ids)
	}
	if got := firstFailed(steps); !strings.HasPrefix(got, "expect[2] r/k8s.restart_pod: action 5 ended failed") {
		t.Errorf("firstFailed = %q", got)
	}
	if handlersDone(steps) || allMet(steps) {
		t.Error("a failed step counts as done")
	}
}

// failingResolve refuses every resolved alert.
type failingResolve struct {
	*fakeTarget
	resolves int
}

func (f *failingResolve) Send(ctx context.Context, as []alert.Alert) error {
	if len(as) > 0 && as[0].Status == alert.StatusResolved {
		f.mu.Lock()
		f.resolves++
		f.mu.Unlock()
		return errors.New("HTTP 503: bus down")
	}
	return f.fakeTarget.Send(ctx, as)
}

package engine_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/vocab"
)

// panicker is test.fix with bugs: Do panics on target "boom"; Build panics buildPanics times.
type panicker struct {
	*recorder
	buildPanics atomic.Int32
}

func (p *panicker) Build(params handlers.Params) (handlers.Action, error) {
	if p.buildPanics.Add(-1) >= 0 {
		panic("build bug")
	}
	act, err := p.recorder.Build(params)
	if err != nil {
		return nil, err
	}
	return &panicAction{recAction: act.(*recAction)}, nil
}

type panicAction struct{ *recAction }

func (a *panicAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	if a.target == "boom" {
		var m map[string]int
		m["boom"]++ //nolint:staticcheck // a handler bug (assignment to a nil map) is the panic under test
	}
	return a.recAction.Do(ctx, inv, al)
}

// newPanicHarness is the harness with test.fix replaced by a panicker and its own registry.
func newPanicHarness(t *testing.T, mod func(*engine.Options)) (*harness, *panicker, *recorder, *prometheus.Registry) {
	p := &panicker{recorder: &recorder{name: "test.fix", class: vocab.ClassDisruptive, fail: map[string]error{}}}
	page := &recorder{name: "test.page", class: vocab.ClassNotify, fail: map[string]error{}}
	reg := prometheus.NewRegistry()
	h := newHarness(t, crashRule, func(o *engine.Options) {
		hs, err := handlers.NewRegistry(p, page)
		if err != nil {
			t.Fatal(err)
		}
		o.Handlers, o.Registerer = hs, reg
		if mod != nil {
			mod(o)
		}
	})
	return h, p, page, reg
}

func panics(t *testing.T, reg *prometheus.Registry, kind string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "responder_panics_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if m.GetLabel()[0].GetValue() == kind {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("responder_panics_total{kind=%q} is not exported", kind)
	return 0
}

// A handler that panics fails its own action (internal_error, escalated, counted), and the engine
// goes on acting on the next alert.
func TestPanickingActionFailsWithInternalError(t *testing.T) {
	h, p, page, reg := newPanicHarness(t, nil)
	for _, k := range engine.PanicKinds {
		if n := panics(t, reg, k); n != 0 {
			t.Fatalf("panics{kind=%s} = %v at start", k, n)
		}
	}
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": "boom"}))
	h.settle()
	expectActions(t, h.actions(), "actions/0 test.fix failed internal_error", "actions/1 test.fix skipped cancelled",
		"escalate/0 test.page succeeded ")
	var msg string
	if err := h.st.Pool().QueryRow(context.Background(), `SELECT error FROM actions WHERE reason = 'internal_error'`).Scan(&msg); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(msg, "panic in action") || !strings.Contains(msg, "nil map") {
		t.Errorf("error = %q", msg)
	}
	if n := panics(t, reg, engine.PanicAction); n != 1 {
		t.Errorf("panics{kind=action} = %v, want 1", n)
	}
	if len(page.Calls()) != 1 {
		t.Errorf("pages = %+v, want the escalation", page.Calls())
	}
	// The breaker did not count our own bug against the target.
	if n := h.count(`SELECT count(*) FROM breakers WHERE failures > 0`); n != 0 {
		t.Errorf("%d breakers counted the panic as a failure", n)
	}
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": "web-2"}))
	h.settle()
	if calls := p.Calls(); len(calls) != 2 || calls[0].Target != "web-2" {
		t.Fatalf("after the panic: calls %+v, want web-2 and its verify step", calls)
	}
}

// A panic in an executor pass (here a handler's Build, which the pass calls to rebuild a claimed
// action) fails that pass; the executor loop goes on and the next pass runs the action.
func TestPanickingExecutorPassIsRetried(t *testing.T) {
	h, p, _, reg := newPanicHarness(t, func(o *engine.Options) { o.Poll = 10 * time.Millisecond })
	h.process(mkAlert("KubePodCrashLooping", alert.StatusFiring, t0.Add(-time.Minute), map[string]string{"pod": "web-1"}))
	p.buildPanics.Store(1) // the next Build, the executor's
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = h.eng.Run(ctx, time.Second) }()
	defer func() { cancel(); <-done }()
	testwait.Until(t, 15*time.Second, "the executor goes on after a panicking pass", func() bool {
		return h.count(`SELECT count(*) FROM actions WHERE state = 'succeeded'`) >= 2
	})
	if n := panics(t, reg, engine.PanicExecutor); n != 1 {
		t.Errorf("panics{kind=executor} = %v, want 1", n)
	}
	if got := testutil.CollectAndCount(reg, "responder_panics_total"); got != len(engine.PanicKinds) {
		t.Errorf("responder_panics_total has %d series, want %d", got, len(engine.PanicKinds))
	}
}

// Call (what the App wraps the Slack sync run in) turns a panic into a *PanicError, counted once
// under its kind; an error or a nil from fn passes through untouched.
func TestPanicsCall(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, err := engine.NewPanics(reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = p.Call(engine.PanicSlackSync, func() error { panic("sync bug") })
	pe, ok := errors.AsType[*engine.PanicError](err)
	if !ok || pe.Kind != engine.PanicSlackSync || pe.Value != "sync bug" || !strings.Contains(string(pe.Stack), "TestPanicsCall") {
		t.Fatalf("Call = %#v, want a *PanicError with its stack", err)
	}
	if err := p.Call(engine.PanicSlackSync, func() error { return nil }); err != nil {
		t.Fatalf("Call(nil) = %v", err)
	}
	if n := panics(t, reg, engine.PanicSlackSync); n != 1 {
		t.Errorf("panics{kind=slack_sync} = %v, want 1", n)
	}
}

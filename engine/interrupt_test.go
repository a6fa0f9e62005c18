package engine_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/engine"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// blocker is a handler whose Do blocks until released or its context ends; it reports when each
// call starts and with which cause its context ended. Param no_effect makes an interrupted call
// say it stopped before any side effect (handlers.NoEffect).
type blocker struct {
	name    string
	class   vocab.Class
	started chan string // target, when Do starts
	release chan struct{}

	mu     sync.Mutex
	causes map[string]error // target → context.Cause when Do returned
	ended  map[string]time.Time
}

func newBlocker(name string, class vocab.Class) *blocker {
	return &blocker{name: name, class: class, started: make(chan string, 16), release: make(chan struct{}),
		causes: map[string]error{}, ended: map[string]time.Time{}}
}

func (b *blocker) Spec() handlers.Spec {
	return handlers.Spec{Name: b.name, Class: b.class, DefaultApproval: handlers.ApprovalNone,
		Params: []handlers.Param{{Name: "target", Type: handlers.String, Required: true}, {Name: "no_effect", Type: handlers.Bool}}}
}

func (b *blocker) Build(p handlers.Params) (handlers.Action, error) {
	t, _ := p["target"].(string)
	ne, _ := p["no_effect"].(bool)
	return &blockAction{b: b, target: t, noEffect: ne}, nil
}

type blockAction struct {
	b        *blocker
	target   string
	noEffect bool
}

func (a *blockAction) Target() string                           { return a.b.name + ":" + a.target }
func (a *blockAction) Scope() string                            { return "test" }
func (a *blockAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }
func (a *blockAction) Do(ctx context.Context, _ handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	a.b.started <- a.target
	select {
	case <-a.b.release:
		return handlers.Result{Detail: "released"}, nil
	case <-ctx.Done():
	}
	a.b.mu.Lock()
	a.b.causes[a.target], a.b.ended[a.target] = context.Cause(ctx), time.Now()
	a.b.mu.Unlock()
	err := fmt.Errorf("waiting for %s: %w", a.target, context.Cause(ctx))
	if a.noEffect {
		return handlers.Result{}, handlers.NoEffect(err)
	}
	return handlers.Result{}, err
}

// cause waits until the call on target ended and returns its context's cause and when it ended.
func (b *blocker) cause(t *testing.T, target string, within time.Duration) (time.Time, error) {
	t.Helper()
	var c error
	var at time.Time
	testwait.Until(t, within, "the call on "+target+" is interrupted", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		c, at = b.causes[target], b.ended[target]
		return c != nil
	})
	return at, c
}

// interrupted waits until the call on target was interrupted with cause want and returns how long
// after since.
func (b *blocker) interrupted(t *testing.T, target string, want error, since time.Time) time.Duration {
	t.Helper()
	at, cause := b.cause(t, target, 10*time.Second)
	if !errors.Is(cause, want) {
		t.Fatalf("%s: cause %v, want %v", target, cause, want)
	}
	t.Logf("%s interrupted (%v) %s later", target, want, at.Sub(since).Round(time.Millisecond))
	return at.Sub(since)
}

func (b *blocker) waitStarted(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-b.started:
		case <-time.After(15 * time.Second):
			t.Fatal("a handler call did not start")
		}
	}
}

// interruptEnv is one database, the fix (disruptive) and tell (notify) blockers, a page recorder
// for escalations, and replica A's engine running (Run) in the background.
type interruptEnv struct {
	h          *harness
	fix, tell  *blocker
	url        string
	stopEngine func()
}

const interruptRules = `
rules:
  - name: fix
    when: alert.name == "Broken"
    actions:
      - handler: test.block_fix
        params: {target: "{{ alert.labels.pod }}", no_effect: false}
    escalate:
      - handler: test.page
        params: {target: "oncall-{{ alert.labels.pod }}"}
  - name: fix-before-effect
    when: alert.name == "BrokenEarly"
    actions:
      - handler: test.block_fix
        params: {target: "{{ alert.labels.pod }}", no_effect: true}
    escalate:
      - handler: test.page
        params: {target: "oncall-{{ alert.labels.pod }}"}
  - name: tell
    when: alert.name == "Tell"
    actions:
      - handler: test.block_tell
        params: {target: "{{ alert.labels.pod }}"}
`

func newInterruptEnv(t *testing.T, mod func(*engine.Options)) *interruptEnv {
	t.Helper()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	st, err := store.Open(ctx, url, store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.Close)
	ie := &interruptEnv{url: url, fix: newBlocker("test.block_fix", vocab.ClassDisruptive), tell: newBlocker("test.block_tell", vocab.ClassNotify)}
	h := &harness{t: t, clock: &clock{t: t0}, st: st, page: &recorder{name: "test.page", class: vocab.ClassNotify, fail: map[string]error{}}}
	if h.reg, err = handlers.NewRegistry(ie.fix, ie.tell, h.page); err != nil {
		t.Fatal(err)
	}
	o := engine.Options{Store: st, Handlers: h.reg, Rules: loadRules(t, h.reg, interruptRules), Owner: "replica-a", Now: h.clock.Now,
		MaxAlertAge: 15 * time.Minute, Lease: 30 * time.Second, Poll: 20 * time.Millisecond, BreakerFailures: 1}
	if mod != nil {
		mod(&o)
	}
	if h.eng, err = engine.New(o); err != nil {
		t.Fatal(err)
	}
	ie.h = h
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); _ = h.eng.Run(runCtx, 100*time.Millisecond) }()
	ie.stopEngine = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(ie.stopEngine)
	return ie
}

// startBroken starts replica A (with lease, when not 0) running the disruptive action of alert
// Broken on pod web-1, its handler blocked.
func startBroken(t *testing.T, lease time.Duration) *interruptEnv {
	t.Helper()
	ie := newInterruptEnv(t, func(o *engine.Options) {
		if lease > 0 {
			o.Lease = lease
		}
	})
	ie.h.process(mkAlert("Broken", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}))
	ie.h.eng.Kick()
	ie.fix.waitStarted(t, 1)
	return ie
}

// waitState polls until the action of handler on target is in state and returns its reason.
func (ie *interruptEnv) waitState(t *testing.T, handler, target string, state vocab.State) vocab.Reason {
	t.Helper()
	var reason vocab.Reason
	testwait.Until(t, 15*time.Second, handler+" on "+target+" is "+string(state), func() bool {
		return ie.h.st.Pool().QueryRow(context.Background(), `SELECT reason FROM actions WHERE handler = $1 AND target = $2 AND state = $3`,
			handler, target, state).Scan(&reason) == nil
	})
	return reason
}

// TestPauseInterruptsRunningDisruptiveActions: a pause committed in this process (API or Slack:
// store + Kick) cancels the contexts of the disruptive actions running here at once; they end
// unknown (or failed when the handler says it stopped before any effect) with reason paused,
// escalate, and do not count against their breaker; a notification running meanwhile goes on.
func TestPauseInterruptsRunningDisruptiveActions(t *testing.T) {
	ie := newInterruptEnv(t, nil)
	h := ie.h
	h.process(mkAlert("Broken", alert.StatusFiring, t0, map[string]string{"pod": "web-1"}),
		mkAlert("BrokenEarly", alert.StatusFiring, t0, map[string]string{"pod": "web-2"}),
		mkAlert("Tell", alert.StatusFiring, t0, map[string]string{"pod": "humans"}))
	h.eng.Kick()
	ie.fix.waitStarted(t, 2)
	ie.tell.waitStarted(t, 1)

	if _, err := h.st.SetPause(context.Background(), true, "api", "api", "stop everything", h.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	h.eng.Kick() // what POST /api/v1/pause and /responder pause do after committing
	for _, target := range []string{"web-1", "web-2"} {
		if d := ie.fix.interrupted(t, target, handlers.ErrPaused, pausedAt); d > 2*time.Second {
			t.Errorf("%s interrupted %s after the pause, want within 2s", target, d)
		}
	}
	if r := ie.waitState(t, "test.block_fix", "test.block_fix:web-1", vocab.StateUnknown); r != vocab.ReasonPaused {
		t.Errorf("web-1 (effect may have happened): unknown/%s, want unknown/paused", r)
	}
	if r := ie.waitState(t, "test.block_fix", "test.block_fix:web-2", vocab.StateFailed); r != vocab.ReasonPaused {
		t.Errorf("web-2 (stopped before any effect): failed/%s, want failed/paused", r)
	}
	// Both escalate (their pages are notify actions: they run while paused).
	ie.waitState(t, "test.page", "test.page:oncall-web-1", vocab.StateSucceeded)
	ie.waitState(t, "test.page", "test.page:oncall-web-2", vocab.StateSucceeded)
	// The failure is responder's, not the target's: no breaker opened (BreakerFailures is 1).
	if n := h.count(`SELECT count(*) FROM breakers WHERE state <> 'closed' OR failures > 0`); n != 0 {
		t.Errorf("%d breakers counted the interruption", n)
	}
	// The notification was not interrupted: it is still running and finishes normally.
	ie.tell.mu.Lock()
	c := ie.tell.causes["humans"]
	ie.tell.mu.Unlock()
	if c != nil {
		t.Fatalf("the notification was interrupted: %v", c)
	}
	close(ie.tell.release)
	ie.waitState(t, "test.block_tell", "test.block_tell:humans", vocab.StateSucceeded)
}

// TestPauseByAnotherReplicaInterrupts: replica B (its own pool on the same database) commits the
// pause and does not tell A; A's kill-switch watch notices within PauseWatch (default 1s).
func TestPauseByAnotherReplicaInterrupts(t *testing.T) {
	ie := startBroken(t, 0)
	h := ie.h

	b, err := store.Open(context.Background(), ie.url, store.Options{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.SetPause(context.Background(), true, "slack:bob", "api", "replica b", h.clock.Now(), nil); err != nil {
		t.Fatal(err)
	}
	if d := ie.fix.interrupted(t, "web-1", handlers.ErrPaused, time.Now()); d > 2500*time.Millisecond {
		t.Errorf("interrupted %s after another replica's pause, want within about 2s", d)
	}
	if r := ie.waitState(t, "test.block_fix", "test.block_fix:web-1", vocab.StateUnknown); r != vocab.ReasonPaused {
		t.Errorf("unknown/%s, want unknown/paused", r)
	}
	ie.waitState(t, "test.page", "test.page:oncall-web-1", vocab.StateSucceeded)
}

// TestLeaseExpiredByAnotherReplicaInterrupts: replica B expires A's lease (A looked dead) and
// records unknown/lease_expired with its escalation. A's next renewal updates no row: A cancels
// the handler (lease_lost) and, the row being B's verdict, only audits what it saw: the row is not
// overwritten and the escalation is not planned twice.
func TestLeaseExpiredByAnotherReplicaInterrupts(t *testing.T) {
	ie := startBroken(t, 3*time.Second)
	h := ie.h

	later := func() time.Time { return h.clock.Now().Add(time.Hour) } // B's clock: A's lease is long past
	b, err := engine.New(engine.Options{Store: h.st, Handlers: h.reg, Rules: h.eng.Rules(), Owner: "replica-b", Now: later, Lease: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	// B's passes expire A's lease. One pass may skip the row while A's renewal holds its lock
	// (SKIP LOCKED): B's next pass takes it, as a running replica's does.
	testwait.Until(t, 15*time.Second, "replica B expires A's lease", func() bool {
		if _, err := b.ExecuteOnce(context.Background()); err != nil {
			t.Fatal(err)
		}
		return h.count(`SELECT count(*) FROM actions WHERE state = 'unknown' AND reason = 'lease_expired'`) == 1
	})
	ie.fix.interrupted(t, "web-1", handlers.ErrLeaseLost, time.Now())
	testwait.Until(t, 15*time.Second, "replica A audits what it saw", func() bool {
		return h.count(`SELECT count(*) FROM audit WHERE actor = 'replica-a' AND reason = 'lease_lost'`) == 1
	})
	got := h.actions()
	if got[0].State != vocab.StateUnknown || got[0].Reason != "lease_expired" {
		t.Errorf("the other replica's verdict was overwritten: %+v", got[0])
	}
	if n := h.count(`SELECT count(*) FROM actions WHERE phase = 'escalate'`); n != 1 {
		t.Errorf("%d escalations, want 1 (planned by the replica that expired the lease)", n)
	}
}

// TestLeaseNotRenewableInterrupts: A cannot renew its lease (the row is locked by another
// session) for longer than is safe: it interrupts the handler (lease_lost) before the lease
// expires, and once it can write again it records unknown/lease_lost and escalates.
func TestLeaseNotRenewableInterrupts(t *testing.T) {
	ie := startBroken(t, 3*time.Second)
	h := ie.h

	ctx := context.Background()
	tx, err := h.st.Pool().Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT id FROM actions WHERE handler = 'test.block_fix' FOR UPDATE`); err != nil {
		t.Fatal(err)
	}
	// Renewals now time out; the lease (3s from t0) must not be let run out: 2.5s later, A stops.
	h.clock.Add(2500 * time.Millisecond)
	ie.fix.interrupted(t, "web-1", handlers.ErrLeaseLost, time.Now())
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if r := ie.waitState(t, "test.block_fix", "test.block_fix:web-1", vocab.StateUnknown); r != vocab.ReasonLeaseLost {
		t.Errorf("unknown/%s, want unknown/lease_lost", r)
	}
	ie.waitState(t, "test.page", "test.page:oncall-web-1", vocab.StateSucceeded)
}

package k8s

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// realTimeHandlers builds the handlers on e's fake cluster with the real clock and sleep and
// long waits: a retry or verify loop blocks until its context ends.
func realTimeHandlers(t *testing.T, e *env) (restart, rollout handlers.Handler) {
	t.Helper()
	hs, err := New(Options{Client: e.cs, Namespaces: []string{"shop"}, Backoff: time.Minute, PollInterval: time.Minute, Instance: "responder-0"})
	if err != nil {
		t.Fatal(err)
	}
	return hs[0], hs[1]
}

// doInterrupted runs a.Do, pauses (cancel with handlers.ErrPaused) when pause is closed, closes
// landed (unless nil) once Do's context is cancelled, and returns Do's error and how long Do took
// after the pause.
func doInterrupted(t *testing.T, a handlers.Action, pause, landed chan struct{}) (time.Duration, error) {
	t.Helper()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	ctx, stop := context.WithTimeout(ctx, time.Hour)
	defer stop()
	var pausedAt time.Time
	go func() {
		<-pause
		pausedAt = time.Now()
		cancel(handlers.ErrPaused)
		if landed != nil {
			close(landed)
		}
	}()
	errc := make(chan error, 1)
	go func() { _, err := a.Do(ctx, invFor(42, "7"), crashLooping); errc <- err }()
	select {
	case err := <-errc:
		if pausedAt.IsZero() {
			t.Fatalf("Do returned before the pause: %v", err)
		}
		return time.Since(pausedAt), err
	case <-time.After(30 * time.Second):
		t.Fatal("Do did not return after the pause")
	}
	return 0, nil
}

// TestRestartPodStopsRetryingWhenPaused: an eviction a PodDisruptionBudget refuses is retried with
// backoff; a pause during the wait stops the loop at once, with no further eviction, and the error
// says nothing was evicted (the engine records failed/paused, not unknown).
func TestRestartPodStopsRetryingWhenPaused(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	pause := make(chan struct{})
	ev := e.reactEvictions(func(n int) error {
		if n == 1 {
			close(pause) // the pause arrives while the loop waits for its first retry (1m)
		}
		return tooManyRequests()
	})
	restart, _ := realTimeHandlers(t, e)
	took, err := doInterrupted(t, build(t, restart, handlers.Params{"namespace": "shop", "pod": "web-abc-1"}), pause, nil)
	if took > time.Second {
		t.Errorf("Do returned %s after the pause, want at once", took)
	}
	if n, _ := ev.count(); n != 1 {
		t.Errorf("%d evictions, want 1 (none after the pause)", n)
	}
	if !errors.Is(err, handlers.ErrPaused) || handlers.ReasonOf(err) != vocab.ReasonPaused {
		t.Errorf("err = %v (reason %s), want the pause", err, handlers.ReasonOf(err))
	}
	if !handlers.HadNoEffect(err) {
		t.Errorf("err = %v does not say that nothing was evicted", err)
	}
}

// TestRestartPodStopsVerifyingWhenPaused: a pause after the eviction stops the verify loop at
// once; the eviction's Event is still recorded, and the error does not claim "no effect": the
// engine records unknown/paused.
func TestRestartPodStopsVerifyingWhenPaused(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	pause, landed := make(chan struct{}), make(chan struct{})
	e.reactEvictions(func(int) error {
		close(pause) // while the eviction is in flight: it completes, the verify step does not
		<-landed     // the pause has landed (Do's context is cancelled) before the API answers
		return nil
	})
	restart, _ := realTimeHandlers(t, e)
	took, err := doInterrupted(t, build(t, restart, handlers.Params{"namespace": "shop", "pod": "web-abc-1"}), pause, landed)
	if took > time.Second {
		t.Errorf("Do returned %s after the pause, want at once", took)
	}
	if !errors.Is(err, handlers.ErrPaused) || handlers.HadNoEffect(err) {
		t.Errorf("err = %v (no effect: %v), want the pause after an eviction", err, handlers.HadNoEffect(err))
	}
	var reasons []string
	for _, ev := range e.events("shop") {
		reasons = append(reasons, ev.Reason)
	}
	if len(reasons) != 1 || reasons[0] != ReasonRestart {
		t.Errorf("events %v, want the eviction's %s", reasons, ReasonRestart)
	}
}

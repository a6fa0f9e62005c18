// Package testwait waits, in tests, for a condition to hold instead of sleeping for a fixed time.
// Only tests import it.
//
// The contract:
//
//   - Every wait polls its condition on the test's goroutine, first at once. The pause between two
//     polls is a tenth of the time waited so far, at least MinInterval and at most MaxInterval: a
//     condition is seen soon after it comes to hold (within about 10% of the wait, or
//     MaxInterval), and a long wait on an external process does not hammer it. The condition may
//     call t.Fatal.
//   - Until, UntilDetail and Keeps give up after a duration d and then fail the test with t.Fatalf,
//     naming what they waited for (and, for UntilDetail, the last detail the condition gave). The
//     condition gets a last call at the deadline, so one that holds just in time counts.
//   - UntilCtx gives up when its context ends (a cancelled test, the context's own deadline) or
//     when the condition returns an error, and fails the test saying which.
//
// A negative ("X never happens") is not asserted by sleeping and then looking once: the sleep is
// too short on a loaded machine and wasted on an idle one. Turn it into a positive event that
// proves the system got past the point where X would have happened (an audit row, a later message
// processed, a metric moving on), wait for that event with Keeps, and let Keeps check at every
// poll on the way that X has not happened. Better still, when the store records the order of
// events, assert that order (no "started" row before the approval row) and do not wait at all.
package testwait

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The pause between two polls of a condition is a tenth of the time waited so far, clamped to
// [MinInterval, MaxInterval].
const (
	MinInterval = time.Millisecond
	MaxInterval = 50 * time.Millisecond
)

// Until polls cond until it returns true; if it does not within d, it fails t with what, which
// names the awaited state ("the page is sent", "pending 3").
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	ok, _ := poll(nil, time.Now().Add(d), func() (bool, error) { return cond(), nil })
	if !ok {
		t.Fatalf("%s: not reached within %s", what, d)
	}
}

// UntilDetail is Until for a condition that also says what it saw (a state, a value, an error);
// the failure message carries the detail of the last poll.
func UntilDetail(t testing.TB, d time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var detail string
	ok, _ := poll(nil, time.Now().Add(d), func() (bool, error) {
		var ok bool
		ok, detail = cond()
		return ok, nil
	})
	if !ok {
		t.Fatalf("%s: not reached within %s (last: %s)", what, d, detail)
	}
}

// UntilCtx polls cond with ctx until it returns true. It fails t with what and the reason when
// cond returns an error (the wait stops at once) or when ctx ends first (the wait has no deadline
// of its own: give ctx one). cond has the shape of k8s.io/apimachinery's
// wait.ConditionWithContextFunc.
func UntilCtx(ctx context.Context, t testing.TB, what string, cond func(context.Context) (bool, error)) {
	t.Helper()
	ok, err := poll(ctx.Done(), time.Time{}, func() (bool, error) { return cond(ctx) })
	switch {
	case err != nil:
		t.Fatalf("%s: %v", what, err)
	case !ok:
		t.Fatalf("%s: not reached: %v", what, context.Cause(ctx))
	}
}

// errBroken stops a Keeps poll whose invariant no longer holds.
var errBroken = errors.New("invariant broken")

// Keeps asserts a negative by waiting for a positive: it polls progress until it returns true
// (failing t with until when it does not within d), and checks at every poll, and once more after
// progress held, that invariant still holds, failing t with what the first time it does not.
//
// what names the invariant ("one page"); until names the progress that proves the system got past
// the point where the invariant would have broken ("the engine processed 5 later probe runs").
func Keeps(t testing.TB, d time.Duration, what string, invariant func() bool, until string, progress func() bool) {
	t.Helper()
	ok, err := poll(nil, time.Now().Add(d), func() (bool, error) {
		if !invariant() {
			return false, errBroken
		}
		if !progress() {
			return false, nil
		}
		if !invariant() {
			return false, errBroken
		}
		return true, nil
	})
	switch {
	case err != nil:
		t.Fatalf("%s: no longer holds while waiting for %s", what, until)
	case !ok:
		t.Fatalf("%s: not reached within %s (%s held meanwhile)", until, d, what)
	}
}

// poll calls check until it returns true or an error, done is closed, or deadline (unless zero)
// passes. At the deadline check gets a last call; when done is closed, it does not (a cancelled
// context would fail it anyway). poll returns check's last answer; false and a nil error mean
// that it gave up.
func poll(done <-chan struct{}, deadline time.Time, check func() (bool, error)) (bool, error) {
	start := time.Now()
	for {
		if ok, err := check(); ok || err != nil {
			return ok, err
		}
		pause := min(max(time.Since(start)/10, MinInterval), MaxInterval)
		if !deadline.IsZero() {
			left := time.Until(deadline)
			if left <= 0 {
				return false, nil
			}
			pause = min(pause, left)
		}
		timer := time.NewTimer(pause)
		select {
		case <-done:
			timer.Stop()
			return false, nil
		case <-timer.C:
		}
	}
}

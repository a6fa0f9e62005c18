package testwait

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records a Fatalf and ends the goroutine, as testing.T does.
type fakeT struct {
	testing.TB
	failed string
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls wait with a fakeT on a goroutine of its own and returns the failure message ("" when
// the wait succeeded).
func run(t *testing.T, wait func(tb testing.TB)) string {
	t.Helper()
	f := &fakeT{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		wait(f)
	}()
	<-done
	return f.failed
}

// after returns a condition that holds from n polls on, and its poll count.
func after(n int32) (func() bool, *atomic.Int32) {
	var polls atomic.Int32
	return func() bool { return polls.Add(1) >= n }, &polls
}

func TestUntil(t *testing.T) {
	cond, polls := after(5)
	if msg := run(t, func(tb testing.TB) { Until(tb, 10*time.Second, "five polls", cond) }); msg != "" {
		t.Fatalf("failed: %s", msg)
	}
	if n := polls.Load(); n != 5 {
		t.Errorf("polled %d times, want 5 (no poll after the condition held)", n)
	}

	start := time.Now()
	msg := run(t, func(tb testing.TB) { Until(tb, 50*time.Millisecond, "never", func() bool { return false }) })
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the deadline", took)
	}
	if msg != "never: not reached within 50ms" {
		t.Errorf("message %q", msg)
	}
}

func TestUntilChecksOnceMoreAtTheDeadline(t *testing.T) {
	deadline := time.Now().Add(30 * time.Millisecond)
	msg := run(t, func(tb testing.TB) {
		Until(tb, 30*time.Millisecond, "at the deadline", func() bool { return !time.Now().Before(deadline) })
	})
	if msg != "" {
		t.Fatalf("a condition that holds at the deadline failed: %s", msg)
	}
}

func TestPollInterval(t *testing.T) {
	cond, polls := after(1 << 30)
	run(t, func(tb testing.TB) { Until(tb, 100*time.Millisecond, "never", cond) })
	// Every 1ms for 10ms, then a tenth of the time waited: about 10 + 10*ln(10) = 33 polls (fewer
	// on a loaded machine).
	t.Logf("%d polls in 100ms", polls.Load())
	if n := polls.Load(); n < 10 || n > 40 {
		t.Errorf("%d polls in 100ms, want about 33", n)
	}
	cond, polls = after(1 << 30)
	run(t, func(tb testing.TB) { Until(tb, 1500*time.Millisecond, "never", cond) })
	// About 33 polls in the first 100ms, 10*ln(5) = 16 until 500ms, then every 50ms: about 70.
	t.Logf("%d polls in 1.5s", polls.Load())
	if n := polls.Load(); n < 30 || n > 80 {
		t.Errorf("%d polls in 1.5s, want about 70", n)
	}
}

func TestUntilDetail(t *testing.T) {
	n := 0
	msg := run(t, func(tb testing.TB) {
		UntilDetail(tb, 30*time.Millisecond, "state running", func() (bool, string) {
			n++
			return false, fmt.Sprintf("state planned (poll %d)", n)
		})
	})
	if want := fmt.Sprintf("state running: not reached within 30ms (last: state planned (poll %d))", n); msg != want {
		t.Errorf("message %q, want %q", msg, want)
	}
	if msg := run(t, func(tb testing.TB) {
		UntilDetail(tb, time.Second, "ok", func() (bool, string) { return true, "" })
	}); msg != "" {
		t.Errorf("failed: %s", msg)
	}
}

func TestUntilCtx(t *testing.T) {
	cond, _ := after(3)
	if msg := run(t, func(tb testing.TB) {
		UntilCtx(t.Context(), tb, "three polls", func(context.Context) (bool, error) { return cond(), nil })
	}); msg != "" {
		t.Fatalf("failed: %s", msg)
	}

	boom := errors.New("boom")
	var polls int
	msg := run(t, func(tb testing.TB) {
		UntilCtx(t.Context(), tb, "no error", func(context.Context) (bool, error) { polls++; return false, boom })
	})
	if msg != "no error: boom" || polls != 1 {
		t.Errorf("message %q after %d polls, want the error at once", msg, polls)
	}

	ctx, cancel := context.WithTimeoutCause(t.Context(), 20*time.Millisecond, errors.New("the test's budget"))
	defer cancel()
	msg = run(t, func(tb testing.TB) {
		UntilCtx(ctx, tb, "never", func(ctx context.Context) (bool, error) { return false, nil })
	})
	if msg != "never: not reached: the test's budget" {
		t.Errorf("message %q", msg)
	}
}

func TestKeeps(t *testing.T) {
	progress, _ := after(5)
	var checks atomic.Int32
	invariant := func() bool { checks.Add(1); return true }
	if msg := run(t, func(tb testing.TB) { Keeps(tb, time.Second, "one page", invariant, "5 runs", progress) }); msg != "" {
		t.Fatalf("failed: %s", msg)
	}
	if n := checks.Load(); n != 6 {
		t.Errorf("invariant checked %d times, want 6 (every poll and once after the progress)", n)
	}

	progress, _ = after(5)
	pages := 0
	msg := run(t, func(tb testing.TB) {
		Keeps(tb, time.Second, "one page", func() bool { pages++; return pages < 3 }, "5 runs", progress)
	})
	if msg != "one page: no longer holds while waiting for 5 runs" {
		t.Errorf("message %q", msg)
	}

	// The invariant breaks with the progress: the last check sees it.
	progress, _ = after(2)
	broken := false
	msg = run(t, func(tb testing.TB) {
		Keeps(tb, time.Second, "one page", func() bool { return !broken }, "2 runs", func() bool { broken = progress(); return broken })
	})
	if !strings.Contains(msg, "no longer holds") {
		t.Errorf("message %q, want the invariant broken", msg)
	}

	msg = run(t, func(tb testing.TB) {
		Keeps(tb, 20*time.Millisecond, "one page", func() bool { return true }, "5 runs", func() bool { return false })
	})
	if msg != "5 runs: not reached within 20ms (one page held meanwhile)" {
		t.Errorf("message %q", msg)
	}
}

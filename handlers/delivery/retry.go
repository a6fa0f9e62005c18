package delivery

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/internal/clock"
)

// Policy is how a delivery retries. The zero value tries once.
type Policy struct {
	// Retries is how many attempts may follow the first (0: none).
	Retries int
	// Backoff is the first wait, doubled on each retry, with ±20% jitter, up to MaxBackoff.
	Backoff time.Duration
	// Sleep waits between attempts (nil: clock.Sleep); tests record the waits instead.
	Sleep func(context.Context, time.Duration) error
	// Now is the clock the deadline check reads (nil: time.Now).
	Now func() time.Time
	// Log gets one warning per retry (nil: none), with the keys attempt, reason and wait_seconds.
	Log *slog.Logger
	// What names the delivery in that warning: "<What> failed, retrying".
	What string
}

// Attempt is the outcome of one attempt.
type Attempt struct {
	// Err is nil when the attempt delivered; else the error Retry returns if it is the last.
	Err error
	// Retry says another attempt may succeed.
	Retry bool
	// RetryAfter replaces the backoff before the next attempt when it is positive.
	RetryAfter time.Duration
}

// Fail returns the Attempt of a failed attempt with v's reason, retry and Retry-After, and the
// message msg followed by v.Note.
func (v Verdict) Fail(msg string) Attempt {
	return Attempt{Err: &handlers.Error{Reason: v.Reason, Err: fmt.Errorf("%s%s", msg, v.Note)}, Retry: v.Retry, RetryAfter: v.RetryAfter}
}

// Retry calls attempt with n = 1, 2, … until one delivers (nil), one fails for good, the retries
// are spent, or the next wait would end past ctx's deadline; then it returns the last attempt's
// error. When it does not retry for lack of time, or ctx ends a wait, the error says so, wraps
// ctx's cause in the latter case, and keeps the attempt's reason: an attempt error that is a
// *handlers.Error stays one, with the note added to its message.
func (p Policy) Retry(ctx context.Context, attempt func(n int) Attempt) error {
	sleep, now := p.Sleep, p.Now
	if sleep == nil {
		sleep = clock.Sleep
	}
	if now == nil {
		now = time.Now
	}
	bo := p.backoff()
	for n := 1; ; n++ {
		a := attempt(n)
		if a.Err == nil {
			return nil
		}
		if !a.Retry || n > p.Retries {
			return a.Err
		}
		wait := bo.NextBackOff()
		if a.RetryAfter > 0 {
			wait = a.RetryAfter
		}
		if dl, ok := ctx.Deadline(); ok && now().Add(wait).After(dl) {
			return annotate(a.Err, fmt.Sprintf(" (no time left to retry after %s)", wait), nil)
		}
		if p.Log != nil {
			p.Log.WarnContext(ctx, p.What+" failed, retrying", "attempt", n, "reason", handlers.ReasonOf(a.Err),
				"wait_seconds", wait.Seconds())
		}
		if err := sleep(ctx, wait); err != nil {
			return annotate(a.Err, "; not retried: ", err)
		}
	}
}

func (p Policy) backoff() *backoff.ExponentialBackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     p.Backoff,
		RandomizationFactor: 0.2,
		Multiplier:          2,
		MaxInterval:         MaxBackoff,
	}
}

// Bound is an upper bound of one delivery whose attempts each take at most attempt: every attempt
// timing out, plus the longest backoffs, plus a second. It does not count Retry-After waits: a
// deadline shorter than them makes Retry stop early instead.
func (p Policy) Bound(attempt time.Duration) time.Duration {
	d := time.Duration(p.Retries+1) * attempt
	b := p.Backoff
	for range p.Retries {
		d += min(b+b/2, MaxBackoff)
		b *= 2
	}
	return d + time.Second
}

// annotate adds note (and cause, when not nil) to err's message, keeping err's reason: a
// *handlers.Error stays one.
func annotate(err error, note string, cause error) error {
	wrap := func(e error) error {
		if cause != nil {
			return fmt.Errorf("%w%s%w", e, note, cause)
		}
		return fmt.Errorf("%w%s", e, note)
	}
	if he, ok := err.(*handlers.Error); ok { //nolint:errorlint // only an outermost *Error is rebuilt; a wrapped one is wrapped again
		return &handlers.Error{Reason: he.Reason, Err: wrap(he.Err)}
	}
	return wrap(err)
}

package delivery

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// Bounds of the waits between attempts.
const (
	// MaxRetryAfter is the longest Retry-After waited for; a longer one ends the retries.
	MaxRetryAfter = time.Minute
	// MaxBackoff caps the backoff between attempts (before its jitter).
	MaxBackoff = 10 * time.Second
	// maxRetryAfterValue bounds a parsed Retry-After, so that no value overflows a Duration.
	maxRetryAfterValue = 24 * time.Hour
)

// Verdict is what an attempt's answer, or its lack of one, means for the delivery.
type Verdict struct {
	// Reason is the outcome's reason; "" when the request was delivered.
	Reason vocab.Reason
	// Retry says another attempt may succeed.
	Retry bool
	// RetryAfter is the server's Retry-After when it is to be honoured; 0: use the backoff.
	RetryAfter time.Duration
	// Note says why a kind of answer that is retried is not, for the end of an error message:
	// " (Retry-After 1h0m0s is longer than 1m0s)"; "" otherwise.
	Note string
}

// Delivered reports whether the answer was a success.
func (v Verdict) Delivered() bool { return v.Reason == "" }

// Classify is the package's rule (see the package doc) for an answer with status code and header,
// received at now (for a Retry-After given as an HTTP-date).
func Classify(code int, header http.Header, now time.Time) Verdict {
	switch {
	case code >= 200 && code < 300:
		return Verdict{}
	case code == http.StatusTooManyRequests:
		v := Verdict{Reason: vocab.ReasonServerError, Retry: true}
		if d, ok := ParseRetryAfter(header.Get("Retry-After"), now); ok {
			v.Reason = vocab.ReasonClientError
			v.honour(d)
		}
		return v
	case code >= 500:
		v := Verdict{Reason: vocab.ReasonServerError, Retry: true}
		if d, ok := ParseRetryAfter(header.Get("Retry-After"), now); ok && code == http.StatusServiceUnavailable {
			v.honour(d)
		}
		return v
	default:
		return Verdict{Reason: vocab.ReasonClientError}
	}
}

// honour makes the server's wait d the next one, or ends the retries when d is too long.
func (v *Verdict) honour(d time.Duration) {
	v.RetryAfter = d
	if d > MaxRetryAfter {
		v.Retry = false
		v.Note = fmt.Sprintf(" (Retry-After %s is longer than %s)", d, MaxRetryAfter)
	}
}

// ClassifyError classifies err, the error of an attempt that got no answer. ctx is the whole
// delivery's context, attempt the attempt's own (ctx with the attempt's timeout).
func ClassifyError(ctx, attempt context.Context, err error) Verdict {
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		// The delivery's own deadline, a cancellation or an interruption: no attempt can follow.
		return Verdict{Reason: handlers.ReasonOf(context.Cause(ctx))}
	case attempt.Err() != nil || errors.As(err, &ne) && ne.Timeout():
		return Verdict{Reason: vocab.ReasonTimeout, Retry: true}
	default:
		return Verdict{Reason: vocab.ReasonServerError, Retry: true}
	}
}

// ParseRetryAfter parses a Retry-After value: delay-seconds (more than 24h counts as 24h) or an
// HTTP-date (a date in the past is a wait of 0). ok is false for an empty, negative or malformed
// value.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil || errors.Is(err, strconv.ErrRange) {
		if s < 0 {
			return 0, false
		}
		// ParseInt gives math.MaxInt64 for digits beyond its range.
		return time.Duration(min(s, int64(maxRetryAfterValue/time.Second))) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

package httpreq

import (
	"time"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
)

// The names this package's tests used before handlers/delivery and internal/clock took over the
// retry loop, Retry-After, excerpts and the sleep: the tests keep checking the handler through them.

var sleepCtx = clock.Sleep

const maxDetail = delivery.MaxExcerpt

func sanitize(b []byte) string { return handlers.Excerpt(b, delivery.MaxExcerpt) }

func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	return delivery.ParseRetryAfter(v, now)
}

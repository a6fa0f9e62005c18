package page

import (
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/delivery"
	"github.com/responder-sre/responder/internal/clock"
)

// The names this package's tests used before handlers/delivery and internal/clock took over the
// retry loop, excerpts and the sleep: the tests keep checking the handler through them.

var sleepCtx = clock.Sleep

func sanitize(b []byte) string { return handlers.Excerpt(b, delivery.MaxExcerpt) }

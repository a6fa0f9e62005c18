// Package clock holds the one context-aware sleep of responder's retry and poll loops.
//
// It is a leaf (standard library only) so that both the handlers and the bus can use it: the bus
// may not import handlers. Loops take a func with Sleep's signature so that tests can replace the
// wait with a recording one.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done. It returns nil after a full wait, else context.Cause(ctx):
// ctx.Err(), or the cause a context.WithCancelCause gave (an interruption such as a pause). A d of
// zero or less returns at once, nil unless ctx is already done.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

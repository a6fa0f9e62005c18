package handlers

import (
	"context"
	"errors"
	"fmt"

	"github.com/responder-sre/responder/vocab"
)

// Interruption is the cause (context.Cause) of a running action's context when the engine stops
// the action before its end. Handlers stop at their next safe point: a wait or a retry loop at
// once; a step that changes something finishes (see StepContext), and no further step starts.
type Interruption struct {
	Reason vocab.Reason
	msg    string
}

func (i *Interruption) Error() string { return i.msg }

// The interruptions the engine uses as causes.
var (
	ErrPaused    = &Interruption{Reason: vocab.ReasonPaused, msg: "responder was paused"}
	ErrLeaseLost = &Interruption{Reason: vocab.ReasonLeaseLost, msg: "this replica lost the action's lease"}
)

// Interrupted returns the interruption that cancelled ctx, or nil (not cancelled, or cancelled for
// another reason: the action's deadline, shutdown).
func Interrupted(ctx context.Context) *Interruption {
	var i *Interruption
	if errors.As(context.Cause(ctx), &i) {
		return i
	}
	return nil
}

// Stop returns nil unless ctx was interrupted; then it returns the error of a handler that takes
// no further step (next names it), wrapping the interruption.
func Stop(ctx context.Context, next string) error {
	if i := Interrupted(ctx); i != nil {
		return fmt.Errorf("stopped before %s: %w", next, i)
	}
	return nil
}

// noEffectError marks an error returned before the action changed anything.
type noEffectError struct{ err error }

func (e *noEffectError) Error() string { return e.err.Error() }
func (e *noEffectError) Unwrap() error { return e.err }

// NoEffect marks err (nil stays nil) as returned before the action reached its side effect: an
// interrupted action whose error says so ends failed, any other interrupted action unknown (its
// effect may have happened).
func NoEffect(err error) error {
	if err == nil || HadNoEffect(err) {
		return err
	}
	return &noEffectError{err}
}

// HadNoEffect reports whether err was marked by NoEffect.
func HadNoEffect(err error) bool {
	var n *noEffectError
	return errors.As(err, &n)
}

// StepContext returns a context for finishing a step that changes something (a fence, a promote,
// a POST): an interruption of ctx does not cancel it, while ctx's deadline and any other
// cancellation (shutdown) still do. The caller checks Stop(ctx) before its next step.
func StepContext(ctx context.Context) (context.Context, context.CancelFunc) {
	step, cancel := context.WithCancelCause(context.WithoutCancel(ctx))
	var stopDeadline context.CancelFunc = func() {}
	if dl, ok := ctx.Deadline(); ok {
		step, stopDeadline = context.WithDeadline(step, dl)
	}
	stop := context.AfterFunc(ctx, func() {
		if Interrupted(ctx) == nil {
			cancel(context.Cause(ctx))
		}
	})
	return step, func() {
		stop()
		stopDeadline()
		cancel(context.Canceled)
	}
}

// TrackEffect runs do, which sets *sent once its side effect may have happened (a request that
// changes something was sent and not refused), and marks an error returned before that with
// NoEffect.
func TrackEffect(do func(sent *bool) (Result, error)) (Result, error) {
	sent := false
	res, err := do(&sent)
	if err != nil && !sent {
		err = NoEffect(err)
	}
	return res, err
}

package engine

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Every running action has its own cancellable context (DESIGN.md §4b): a committed pause
// cancels the disruptive ones with cause handlers.ErrPaused, and a lease this replica cannot renew
// (or that it finds no longer its own) cancels its action with cause handlers.ErrLeaseLost.
// Handlers stop at their next safe point and the outcome is recorded with that reason.

// inFlight is one action this replica runs, from the start of its handler call to its return.
type inFlight struct {
	id         int64
	disruptive bool
	cancel     context.CancelCauseFunc
	done       atomic.Bool  // the handler returned: an interruption no longer changes anything
	leaseUntil atomic.Int64 // unix nanoseconds: the lease as last extended
}

// interruptible registers a running action and returns its context and a function that
// deregisters it once the handler returned, reporting the interruption that cut it short (nil if
// none did).
func (e *Engine) interruptible(ctx context.Context, c store.Claimed) (context.Context, func() *handlers.Interruption) {
	ictx, cancel := context.WithCancelCause(ctx)
	f := &inFlight{id: c.ID, disruptive: c.Class == vocab.ClassDisruptive, cancel: cancel}
	// About the lease the claim set (a little later: the margin of renewOnce covers that).
	f.leaseUntil.Store(e.now().Add(e.o.Lease).UnixNano())
	e.inflight.Store(c.ID, f)
	// A pause committed after the claim that started the action stops it too: look now.
	if f.disruptive {
		e.nudgePauseWatch()
	}
	return ictx, func() *handlers.Interruption {
		f.done.Store(true)
		e.inflight.Delete(c.ID)
		i := handlers.Interrupted(ictx)
		cancel(nil)
		return i
	}
}

// interrupt cancels one running action with cause.
func (e *Engine) interrupt(f *inFlight, cause *handlers.Interruption) {
	if f.done.Load() {
		return
	}
	e.log.Warn("interrupting a running action", "action_id", f.id, "reason", cause.Reason)
	f.cancel(cause)
}

// interruptedOutcome is the outcome of an action whose handler returned err after an
// interruption: failed when the handler says it stopped before any side effect, else unknown.
func interruptedOutcome(out store.Outcome, err error, i *handlers.Interruption) store.Outcome {
	out.State, out.Reason = vocab.StateUnknown, i.Reason
	if handlers.HadNoEffect(err) {
		out.State = vocab.StateFailed
	}
	out.Error = err.Error()
	if !errors.Is(err, i) {
		out.Error = i.Error() + ": " + out.Error
	}
	return out
}

// watchPause re-reads the kill switch every PauseWatch (and when kicked: a pause committed in this
// process kicks the engine) while this replica runs disruptive actions, and interrupts them when a
// pause is in force. A pause committed by any replica reaches every replica this way.
func (e *Engine) watchPause(ctx context.Context) {
	t := time.NewTicker(e.o.PauseWatch)
	defer t.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.pauseNudge:
			// Kicks come in bursts (every batch, every finished action): read at most every
			// pauseWatchGap, a little late rather than never.
			if wait := pauseWatchGap - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		e.checkPause(ctx)
	}
}

// pauseWatchGap is the least time between two reads of the kill switch caused by kicks.
const pauseWatchGap = 100 * time.Millisecond

func (e *Engine) nudgePauseWatch() { nudge(e.pauseNudge) }

// checkPause reads the kill switch if a disruptive action runs here and interrupts them all when
// it is on. No disruptive action starts while a pause is in force, so every one running then was
// started before the pause.
func (e *Engine) checkPause(ctx context.Context) {
	var running []*inFlight
	e.inflight.Range(func(_, v any) bool {
		if f := v.(*inFlight); f.disruptive {
			running = append(running, f)
		}
		return true
	})
	if len(running) == 0 {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, e.o.PauseWatch)
	ps, err := e.st.Pause(rctx)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("could not read the kill switch for running actions", "err", err)
		}
		return
	}
	if !ps.Active(e.now()) {
		return
	}
	for _, f := range running {
		e.interrupt(f, handlers.ErrPaused)
	}
}

// renewOnce extends the leases of the actions this replica runs. An action whose lease it did not
// extend although it asked (the row is no longer its own), or whose lease would expire before the
// next renewal because renewals keep failing, is interrupted with lease_lost: another replica
// records it (or already did) as unknown, so it must not go on.
func (e *Engine) renewOnce(ctx context.Context) {
	// Only actions whose handler runs are judged by the renewal (an id claimed by a transaction
	// not yet committed is not running in the database yet). They are listed first: each stays in
	// e.running from before it is registered until after it is deregistered.
	var mine []*inFlight
	e.inflight.Range(func(_, v any) bool { mine = append(mine, v.(*inFlight)); return true })
	var ids []int64
	e.running.Range(func(k, _ any) bool { ids = append(ids, k.(int64)); return true })
	if len(ids) == 0 {
		return
	}
	until := e.now().Add(e.o.Lease)
	rctx, cancel := context.WithTimeout(ctx, e.o.Lease/3)
	renewed, err := e.st.RenewOwnedLeases(rctx, e.o.Owner, ids, until)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("renew leases failed", "err", err, "actions", len(ids))
		// The last renewal that succeeded bounds each lease: stop before another replica may
		// expire it (one renewal period of margin for clocks and the handler's safe point).
		now := e.now()
		for _, f := range mine {
			if !now.Before(time.Unix(0, f.leaseUntil.Load()).Add(-e.o.Lease / 3)) {
				e.interrupt(f, handlers.ErrLeaseLost)
			}
		}
		return
	}
	ok := make(map[int64]bool, len(renewed))
	for _, id := range renewed {
		ok[id] = true
	}
	for _, f := range mine {
		if ok[f.id] {
			f.leaseUntil.Store(until.UnixNano())
			continue
		}
		e.interrupt(f, handlers.ErrLeaseLost)
	}
}

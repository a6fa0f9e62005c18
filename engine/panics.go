package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// A panic in the goroutine of one unit of work (one action's handler call, one executor or timers
// pass, one bus batch, one probe run, one Slack sync or Socket Mode run) fails that unit and
// nothing else: it is recovered, counted in responder_panics_total{kind}, logged with its stack,
// and the unit ends the way a failure of its own ends (an action fails with reason internal_error
// and escalates; a batch is nak'ed and, if it keeps panicking, dead-lettered; a pass or a run is
// tried again). It never ends the process: with it would go every other action in flight and the
// intake.

// Kinds of work a recovered panic failed: the kind label of responder_panics_total.
const (
	PanicAction    = "action"     // one action's handler call (the executor's per-action goroutine)
	PanicExecutor  = "executor"   // one executor pass
	PanicTimers    = "timers"     // one pass of the `for` timers
	PanicBatch     = "batch"      // the processing of one bus batch
	PanicProbe     = "probe"      // one run of one probe
	PanicSlackSync = "slack_sync" // one run of the Slack incident-message sync
	// PanicSlackSocket: one run of Slack's Socket Mode (commands and clicks users send).
	PanicSlackSocket = "slack_socket"
)

// PanicKinds lists every kind, for pre-initialising the metric.
var PanicKinds = []string{PanicAction, PanicExecutor, PanicTimers, PanicBatch, PanicProbe, PanicSlackSync, PanicSlackSocket}

// PanicError is a recovered panic.
type PanicError struct {
	Kind  string
	Value any
	Stack []byte
}

func (e *PanicError) Error() string {
	return fmt.Sprintf("%s: panic in %s: %v", vocab.ReasonInternalError, e.Kind, e.Value)
}

// Panics counts and logs the panics recovered in responder's long-lived goroutines. One per App:
// the engine, the bus consumer, the probes and the Slack sync share it.
type Panics struct {
	total *prometheus.CounterVec
	log   *slog.Logger
}

// NewPanics registers responder_panics_total on reg, every kind at zero.
func NewPanics(reg prometheus.Registerer, log *slog.Logger) (*Panics, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Panics{log: log, total: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Name: "panics_total",
		Help: "Panics recovered in a unit of work (which failed; the process went on), by kind of unit."}, []string{"kind"})}
	if err := reg.Register(p.total); err != nil {
		return nil, fmt.Errorf("register responder_panics_total: %w", err)
	}
	for _, k := range PanicKinds {
		p.total.WithLabelValues(k)
	}
	return p, nil
}

// Count counts a panic of kind that its unit recovered and logged itself.
func (p *Panics) Count(kind string) { p.total.WithLabelValues(kind).Inc() }

// caught counts and logs the panic value v recovered in a unit of kind.
func (p *Panics) caught(kind string, v any, attrs ...any) *PanicError {
	pe := &PanicError{Kind: kind, Value: v, Stack: debug.Stack()}
	p.Count(kind)
	p.log.Error("panic recovered; the unit of work failed, the process goes on",
		append([]any{"kind", kind, "panic", fmt.Sprint(v), "stack", string(pe.Stack)}, attrs...)...)
	return pe
}

// Call runs fn and returns its error, or a *PanicError (counted and logged) when it panics.
func (p *Panics) Call(kind string, fn func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = p.caught(kind, v)
		}
	}()
	return fn()
}

// safePass runs one executor or timers pass; a panic fails that pass only (the loop tries again).
func (e *Engine) safePass(ctx context.Context, kind string, pass func(context.Context) (int, error)) (n int, err error) {
	err = e.panics.Call(kind, func() error {
		n, err = pass(ctx)
		return err
	})
	return n, err
}

// recoverAction is deferred at the top of run: an action whose handler call (or its recording)
// panicked fails with reason internal_error, and escalates, instead of ending the process. It
// must be deferred itself (recover works only there).
func (e *Engine) recoverAction(ctx context.Context, c store.Claimed) {
	v := recover()
	if v == nil {
		return
	}
	pe := e.panics.caught(PanicAction, v, "action_id", c.ID, "incident_id", c.IncidentID, "rule", c.Rule, "handler", c.Handler)
	out := store.Outcome{ID: c.ID, State: vocab.StateFailed, Reason: vocab.ReasonInternalError, Error: pe.Error()}
	// Recording runs code that may have been what panicked: if it panics again, the action stays
	// running and becomes unknown when its lease expires (another replica records it).
	_ = e.panics.Call(PanicAction, func() error { e.record(ctx, c, out); return nil })
}

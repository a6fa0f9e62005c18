package ruletest

import (
	"context"
	"errors"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// recording wraps every handler of reg so that its Spec, Build, Target, Scope, class and static
// checks stay the real ones (param validation and rendering are exactly serve's) while Do only
// reports success, with the result fields results gives for the action (nil: none), and Check
// cannot tell: a rule test never calls out.
func recording(reg *handlers.Registry, results resultsFunc) (*handlers.Registry, error) {
	var hs []handlers.Handler
	for _, n := range reg.Names() {
		h, _ := reg.Get(n)
		hs = append(hs, recHandler{h, results})
	}
	return handlers.NewRegistry(hs...)
}

// resultsFunc returns the result fields a recorded action reports (chained steps read them).
type resultsFunc func(ctx context.Context, actionID int64) (map[string]any, error)

type recHandler struct {
	h       handlers.Handler
	results resultsFunc
}

var (
	_ handlers.Handler         = recHandler{}
	_ handlers.StaticValidator = recHandler{}
)

func (r recHandler) Spec() handlers.Spec { return r.h.Spec() }

func (r recHandler) ValidateStatic(raw handlers.Params) error {
	if v, ok := r.h.(handlers.StaticValidator); ok {
		return v.ValidateStatic(raw)
	}
	return nil
}

func (r recHandler) Build(p handlers.Params) (handlers.Action, error) {
	a, err := r.h.Build(p)
	if err != nil {
		return nil, err
	}
	class := r.h.Spec().Class
	if c, ok := a.(handlers.Classifier); ok {
		class = c.Class()
	}
	rec := recAction{inner: a, class: class, results: r.results}
	if m, ok := a.(handlers.WorkloadMember); ok {
		return memberAction{rec, m.Member()}, nil
	}
	return rec, nil
}

// recAction is a built action that never acts.
type recAction struct {
	inner   handlers.Action
	class   vocab.Class
	results resultsFunc
}

var _ handlers.Classifier = recAction{}

func (a recAction) Target() string     { return a.inner.Target() }
func (a recAction) Scope() string      { return a.inner.Scope() }
func (a recAction) Class() vocab.Class { return a.class }

func (a recAction) Check(context.Context, alert.Alert) error { return handlers.ErrNotCheckable }

func (a recAction) NotCheckable() {}

func (a recAction) Do(ctx context.Context, inv handlers.Invocation, _ alert.Alert) (handlers.Result, error) {
	res := handlers.Result{Detail: "rules test: recorded, not run"}
	if a.results == nil {
		return res, nil
	}
	var err error
	if res.Fields, err = a.results(ctx, inv.ActionID); err != nil {
		return handlers.Result{}, handlers.Fail(vocab.ReasonInternalError, "rules test: result fields: %w", err)
	}
	return res, nil
}

// memberAction keeps an action's workload member (the storm guard's member column).
type memberAction struct {
	recAction
	member string
}

var _ handlers.WorkloadMember = memberAction{}

func (a memberAction) Member() string { return a.member }

func (a memberAction) WorkloadSize(context.Context) (int, error) {
	return 0, errors.New("rules test does not read workload sizes")
}

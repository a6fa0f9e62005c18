package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// Chained steps (rules: steps.<id>.result.<field>). A chained step is planned like any other,
// except that the params that read an earlier step's result (rules.Action.Deferred) cannot be
// rendered yet: planning renders them with stand-ins of the declared types (standIns), only to
// build the action once and learn its class, approval and target (a rule may not put a
// reference in a param that names the target: rules check refuses it), and stores them as written
// in the action's chain (store.Chain) and its params. When the executor claims the step, the
// claim reads the earlier steps of its incident and phase from the rows (state and result
// fields), and buildClaimed renders the deferred params from them: a redelivery, a retry or
// another replica renders the same values, never from memory. A step whose referenced step did
// not succeed (a dry run has no result) is skipped with reason step_not_succeeded, or recorded
// dry_run when it is itself only evaluated. The rendered params replace the stored ones when the
// step starts, so the API shows what was sent.

// standIns returns the stand-in results of the steps s reads (steps: s's list), typed as their
// handlers declare the fields.
func (m matcher) standIns(steps []*rules.Action, s *rules.Action) map[string]map[string]any {
	out := make(map[string]map[string]any, len(s.Refs))
	for _, ref := range s.Refs {
		t := handlers.String
		if ref.Step >= 0 && ref.Step < len(steps) {
			if f, ok := m.specs[steps[ref.Step].Handler].Result(ref.Field); ok {
				t = f.Type
			}
		}
		if out[ref.ID] == nil {
			out[ref.ID] = map[string]any{}
		}
		out[ref.ID][ref.Field] = t.StandIn(ref.String())
	}
	return out
}

// chainOf is the chain a chained step is stored with: its deferred params as written and the step
// index of each id they read; nil for a step that is not chained.
func chainOf(s *rules.Action) *store.Chain {
	keys := s.Deferred()
	if len(keys) == 0 {
		return nil
	}
	c := &store.Chain{Params: make(map[string]any, len(keys)), Steps: make(map[string]int, len(s.Refs))}
	for _, k := range keys {
		c.Params[k] = s.Params[k]
	}
	for _, r := range s.Refs {
		c.Steps[r.ID] = r.Step
	}
	return c
}

// withDeferred returns params with the deferred params of c as written (the stand-ins rendered in
// their place are never stored).
func withDeferred(params map[string]any, c *store.Chain) map[string]any {
	out := maps.Clone(params)
	maps.Copy(out, c.Params)
	return out
}

// stepNotRun is why a chained step cannot render: an earlier step it reads did not succeed.
type stepNotRun struct {
	id    string
	state vocab.State // "" when the step has no row
}

func (e *stepNotRun) Error() string {
	state := string(e.state)
	if state == "" {
		state = "not planned"
	}
	return fmt.Sprintf("its params read the result of step %q, which did not succeed (%s): there is no result to render them from", e.id, state)
}

// buildClaimed builds a claimed action from its stored params; for a chained step it first renders
// the deferred params from the earlier steps' results the claim read (renderChain) and returns
// them with the action, to be recorded when it starts.
func (e *Engine) buildClaimed(c store.Claimed) (handlers.Action, map[string]any, error) {
	chain, earlier, err := c.DecodeChain()
	if err != nil || chain == nil {
		act, err2 := e.buildStored(c)
		return act, nil, errors.Join(err, err2)
	}
	h, ok := e.cur().Handlers.Get(c.Handler)
	if !ok {
		return nil, nil, errors.New("handler " + c.Handler + " is not registered")
	}
	params, err := c.DecodeParams()
	if err != nil {
		return nil, nil, err
	}
	if params, err = e.renderChain(c, chain, earlier, params); err != nil {
		return nil, nil, err
	}
	act, err := h.Build(handlers.Params(maps.Clone(params)))
	if err != nil {
		return nil, nil, err
	}
	if err := e.samePlace(c, act); err != nil {
		return nil, nil, err
	}
	return act, params, nil
}

// renderChain renders the deferred params of a chained step into params, from the result fields
// of the earlier steps it reads (earlier: by step index, as the claim read them).
func (e *Engine) renderChain(c store.Claimed, chain *store.Chain, earlier map[int]store.Earlier, params map[string]any) (map[string]any, error) {
	results := make(map[string]map[string]any, len(chain.Steps))
	for _, id := range slices.Sorted(maps.Keys(chain.Steps)) {
		ea, ok := earlier[chain.Steps[id]]
		if !ok || ea.State != vocab.StateSucceeded {
			return nil, &stepNotRun{id: id, state: ea.State}
		}
		results[id] = ea.Fields
		if results[id] == nil {
			results[id] = map[string]any{}
		}
	}
	a, err := c.DecodeAlert()
	if err != nil {
		return nil, err
	}
	compiled, err := e.deferred.compile(c.Handler, c.RawChain, chain.Params, e.cur().Handlers)
	if err != nil {
		return nil, fmt.Errorf("params as written: %w", err)
	}
	vals, err := compiled.Render(rules.NewEnv(a, e.now(), noneFiring{}).WithSteps(results))
	if err != nil {
		return nil, err
	}
	if params == nil {
		params = map[string]any{}
	}
	maps.Copy(params, vals)
	spec := e.cur().specs[c.Handler]
	for _, k := range slices.Sorted(maps.Keys(vals)) {
		if p, ok := spec.Param(k); ok {
			if err := handlers.CheckType(p, vals[k]); err != nil {
				return nil, err
			}
		}
	}
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, fmt.Errorf("params: %w", err)
	}
	if len(raw) > e.cur().MaxParamsBytes {
		return nil, fmt.Errorf("rendered params are %d bytes, over the limit of %d bytes", len(raw), e.cur().MaxParamsBytes)
	}
	return params, nil
}

// samePlace refuses a chained step whose rendered params would act elsewhere, or in another class,
// than it was planned with: its cooldown, breaker, budget and one-at-a-time slot were those of its
// planned target. rules check keeps references out of target params, so this is a safety net. A
// target that needs a lookup (handlers.Resolver) was resolved when planned and is not compared.
func (e *Engine) samePlace(c store.Claimed, act handlers.Action) error {
	spec := e.cur().specs[c.Handler]
	if class := classOf(spec, act); class != c.Class {
		return fmt.Errorf("rendered from the earlier steps' results, its class would be %s, not %s as planned", class, c.Class)
	}
	if _, ok := act.(handlers.Resolver); ok {
		return nil
	}
	target := act.Target()
	if spec.TargetPerIncident {
		target += " incident/" + itoa(c.IncidentID)
	}
	if target != c.Target || act.Scope() != c.Scope {
		return fmt.Errorf("rendered from the earlier steps' results, it would act on %q (scope %q), not on %q (scope %q) as planned",
			target, act.Scope(), c.Target, c.Scope)
	}
	return nil
}

// deferredCache holds chained steps' deferred params compiled (rules.CompileDeferred) by handler
// and chain as stored: the steps of one rule share one text, so the compile (about 60 times a
// render) is made once, not in every claiming transaction. Bounded: it is emptied when full.
type deferredCache struct {
	mu sync.Mutex
	m  map[deferredKey]*rules.Action
}

type deferredKey struct{ handler, chain string }

// maxDeferred bounds deferredCache.
const maxDeferred = 256

func (d *deferredCache) compile(handler string, rawChain []byte, params map[string]any, cat rules.Catalog) (*rules.Action, error) {
	k := deferredKey{handler, string(rawChain)}
	d.mu.Lock()
	a, ok := d.m[k]
	d.mu.Unlock()
	if ok {
		return a, nil
	}
	a, err := rules.CompileDeferred(handler, params, cat)
	if err != nil {
		return nil, err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil || len(d.m) >= maxDeferred {
		d.m = make(map[deferredKey]*rules.Action)
	}
	d.m[k] = a
	return a, nil
}

// chainVerdict is what the build stage decides for a chained step whose referenced step did not
// succeed: skipped (step_not_succeeded), or dry_run with that said when it is only evaluated.
func chainVerdict(in *guardInput, err *stepNotRun) verdict {
	if in.dry == "" {
		return skipped(vocab.ReasonStepNotSucceeded, err.Error())
	}
	eval := "params not rendered: " + err.Error()
	return verdict{kind: refuse, state: vocab.StateDryRun, reason: in.dry, evaluation: eval,
		result: "would run " + in.c.Handler + " on " + in.c.Target + " (" + eval + ")"}
}

// chainNote names, for an error of a chained step planned with stand-ins, what stood in.
func chainNote(s *rules.Action) string {
	refs := make([]string, len(s.Refs))
	for i, r := range s.Refs {
		refs[i] = r.String()
	}
	return "planned with stand-ins for " + strings.Join(refs, ", ")
}

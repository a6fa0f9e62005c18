package ruletest

import (
	"context"

	"maps"
	"slices"
	"strings"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/vocab"
)

// Chained steps in rule tests. A recorded action reports result fields, so the steps that read
// them (steps.<id>.result.<field>) render as in serve: for a step with an id, the fields its
// handler declares, each the test's step_results value for that id and field when it gives one,
// else a stand-in (a string: the reference's text, "steps.<id>.result.<field>"; an integer: 1; a
// boolean: false), as the engine plans a chained step with.

// stepOf returns the step of set an action row (rule, phase, step) is, nil when there is none.
func stepOf(set *rules.Set, rule string, phase vocab.Phase, step int) *rules.Action {
	r := set.Rule(rule)
	if r == nil {
		return nil
	}
	var list []*rules.Action
	switch phase {
	case vocab.PhaseActions:
		list = r.Actions
	case vocab.PhaseEscalate:
		list = r.Escalate
	case vocab.PhaseOnResolved:
		list = r.OnResolved
	}
	if step < 0 || step >= len(list) {
		return nil
	}
	return list[step]
}

// stepResults is the resultsFunc of a test: the result fields of the action's step.
func (h *harness) stepResults(reg *handlers.Registry, given map[string]map[string]any) resultsFunc {
	return func(ctx context.Context, id int64) (map[string]any, error) {
		a, err := h.st.GetAction(ctx, id)
		if err != nil {
			return nil, err
		}
		s := stepOf(h.set, a.Rule, a.Phase, a.Step)
		if s == nil || s.ID == "" {
			return nil, nil
		}
		hd, ok := reg.Get(s.Handler)
		if !ok {
			return nil, nil
		}
		out := map[string]any{}
		for _, f := range hd.Spec().Results {
			out[f.Name] = f.Type.StandIn(rules.StepRef{ID: s.ID, Field: f.Name}.String())
		}
		maps.Copy(out, given[s.ID])
		return out, nil
	}
}

// checkStepResults refuses step_results for an id no step of the rule files has, or a field its
// handler does not declare.
func checkStepResults(set *rules.Set, reg *handlers.Registry, t Test) error {
	if len(t.StepResults) == 0 {
		return nil
	}
	steps := map[string]*rules.Action{}
	for _, r := range set.Rules {
		for _, l := range [][]*rules.Action{r.Actions, r.Escalate, r.OnResolved} {
			for _, s := range l {
				if s.ID != "" {
					steps[s.ID] = s
				}
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(t.StepResults)) {
		s, ok := steps[id]
		if !ok {
			return lineErr(t.StepResultsLines[id], "step_results: no step of the rule files has id %q (ids: %s)", id,
				strings.Join(slices.Sorted(maps.Keys(steps)), ", "))
		}
		hd, _ := reg.Get(s.Handler)
		var names []string
		if hd != nil {
			for _, f := range hd.Spec().Results {
				names = append(names, f.Name)
			}
		}
		for _, field := range slices.Sorted(maps.Keys(t.StepResults[id])) {
			if !slices.Contains(names, field) {
				return lineErr(t.StepResultsLines[id], "step_results: step %q (%s) has no result field %q (fields: %s)", id, s.Handler, field,
					strings.Join(names, ", "))
			}
		}
	}
	return nil
}

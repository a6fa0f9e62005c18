package rules

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"gopkg.in/yaml.v3"
)

// Chained steps. A step (an entry of a rule's actions, escalate or on_resolved) may have an id,
// and the params of a later step of the same list may read the result of an earlier one:
// {{ steps.<id>.result.<field> }}, where field is one its handler declares (handlers.Spec.Results,
// through StepCatalog). The reference is rewritten at compile time (stepsPatcher) into a call that
// reads the results the engine puts in the Env (WithSteps) and fails when one is missing, like a
// missing label. Everything about a reference is checked at load: the id names an earlier step of
// the same list, the field is declared, the param is not one that names the action's target; a
// `when` may not use steps at all.
//
// The engine renders a chained step's params when it runs the step, from the results the store
// keeps: Action.Deferred lists the params that wait for that, Action.Refs what they read, and
// CompileDeferred compiles them again, at run time, from their text as written (stored with the
// step when it was planned), so a reload between the two cannot change them.

// StepCatalog is implemented by a Catalog that knows the handlers' result fields and target
// params (*handlers.Registry). With a catalog that does not, fields are not checked; with none,
// neither are they.
type StepCatalog interface {
	// ResultFields returns the result fields handler declares, and whether it exists.
	ResultFields(handler string) ([]string, bool)
	// TargetParam reports whether param of handler names what the action acts on.
	TargetParam(handler, param string) bool
}

// StepRef is one reference of a chained step to an earlier step's result:
// steps.<ID>.result.<Field>, the step at index Step of the same list.
type StepRef struct {
	ID    string
	Field string
	Step  int
}

// String is the reference as written.
func (r StepRef) String() string { return "steps." + r.ID + ".result." + r.Field }

// reStepID is what a step id looks like.
var reStepID = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)

// maxStepID bounds a step id's length.
const maxStepID = 63

// fnStep is the internal function steps.<id>.result.<field> is rewritten into.
const fnStep = "@step"

// StepError is the render error of a reference whose step has no result, or whose result lacks
// the field. errors.Is(err, ErrMissing) holds, as for a missing label.
type StepError struct {
	ID, Field string
	// NoResult is true when the step has no result at all (it did not run, or did not succeed).
	NoResult bool
}

func (e *StepError) Error() string {
	if e.NoResult {
		return fmt.Sprintf("step %q has no result (it has not succeeded)", e.ID)
	}
	return fmt.Sprintf("the result of step %q has no field %q", e.ID, e.Field)
}

// Is makes errors.Is(err, ErrMissing) true.
func (e *StepError) Is(target error) bool { return target == ErrMissing }

// WithSteps returns a copy of e whose templates read steps.<id>.result.<field> from results (by
// step id, then field). A chained step's params render only against such an Env.
func (e *Env) WithSteps(results map[string]map[string]any) *Env {
	c := *e
	c.steps = results
	if c.steps == nil {
		c.steps = map[string]map[string]any{}
	}
	return &c
}

func fnStepResult(params ...any) (any, error) {
	e, err := envOf(params[0])
	if err != nil {
		return nil, err
	}
	id, _ := params[1].(string)
	field, _ := params[2].(string)
	res, ok := e.steps[id]
	if !ok {
		return nil, &StepError{ID: id, Field: field, NoResult: true}
	}
	v, ok := res[field]
	if !ok {
		return nil, &StepError{ID: id, Field: field}
	}
	return v, nil
}

// stepsPatcher rewrites every steps.<id>.result.<field> (or steps["id"]["result"]["field"]) into
// @step($env, "id", "field") and records the references; uses counts every `steps` identifier, so
// that one left over (steps alone, steps.x, steps[expr]...) is reported as such.
type stepsPatcher struct {
	refs []StepRef
	uses int
}

// Visit implements ast.Visitor. Walk visits children first: the identifier is counted before the
// member chain that holds it is rewritten.
func (p *stepsPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == "steps" {
			p.uses++
		}
	case *ast.MemberNode:
		id, field, ok := stepChain(n)
		if !ok {
			return
		}
		p.refs = append(p.refs, StepRef{ID: id, Field: field})
		ast.Patch(node, &ast.CallNode{
			Callee: &ast.IdentifierNode{Value: fnStep},
			Arguments: []ast.Node{&ast.IdentifierNode{Value: exprEnvArgument},
				&ast.StringNode{Value: id}, &ast.StringNode{Value: field}},
		})
	}
}

// stepChain reports whether n is steps.<id>.result.<field> with constant names and no optional
// access.
func stepChain(n *ast.MemberNode) (id, field string, ok bool) {
	f, ok1 := n.Property.(*ast.StringNode)
	res, ok2 := n.Node.(*ast.MemberNode)
	if !ok1 || !ok2 || n.Optional || res.Optional {
		return "", "", false
	}
	r, ok1 := res.Property.(*ast.StringNode)
	step, ok2 := res.Node.(*ast.MemberNode)
	if !ok1 || !ok2 || r.Value != "result" || step.Optional {
		return "", "", false
	}
	s, ok1 := step.Property.(*ast.StringNode)
	root, ok2 := step.Node.(*ast.IdentifierNode)
	if !ok1 || !ok2 || root.Value != "steps" {
		return "", "", false
	}
	return s.Value, f.Value, true
}

// errStepsShape is the compile error of a `steps` used other than as steps.<id>.result.<field>.
var errStepsShape = errors.New("steps is read as steps.<id>.result.<field>: the id of an earlier step of this list and a result field of its handler")

// stepsError is err, or errStepsShape for an expression that used steps other than as
// steps.<id>.result.<field> (expr reports "unknown name steps", or nothing at all for an unknown
// name inside the argument of a function taking any, such as toJSON).
func (p *stepsPatcher) stepsError(err error) error {
	if p.uses > len(p.refs) {
		return errStepsShape
	}
	return err
}

// Deferred lists the params (top-level keys) that reference an earlier step's result: the engine
// renders them when it runs the step. nil for a step that is not chained.
func (a *Action) Deferred() []string { return a.deferred }

// chainedKeys returns the keys of a.keys whose value reads a step's result.
func (a *Action) chainedKeys() []string {
	var out []string
	for i, k := range a.keys {
		if len(a.vals[i].stepRefs(nil)) > 0 {
			out = append(out, k)
		}
	}
	return out
}

// stepRefs appends the step references of the node's templates to refs.
func (n *pnode) stepRefs(refs []stepUse) []stepUse {
	switch n.kind {
	case pTemplate:
		for _, r := range n.tmpl.refs {
			refs = append(refs, stepUse{StepRef: r, line: n.tmpl.line})
		}
	case pList:
		for _, c := range n.list {
			refs = c.stepRefs(refs)
		}
	case pMap:
		for _, c := range n.vals {
			refs = c.stepRefs(refs)
		}
	}
	return refs
}

// stepUse is a reference and the line of the template that holds it.
type stepUse struct {
	StepRef
	line int
}

// listStep is one step of a rule's list, for the checks of chained references.
type listStep struct {
	list string // actions, escalate, on_resolved
	a    *Action
}

// checkSteps checks the step ids of a rule (well-formed, unique within the rule) and every
// reference to a step's result (an earlier step of the same list, a declared field, not in a
// target param), and records on each action the params it defers and what they read.
func (p *parser) checkSteps(r *Rule, what string) {
	ids := map[string]listStep{}
	for _, ls := range ruleSteps(r) {
		if ls.a.ID == "" {
			continue
		}
		if prev, dup := ids[ls.a.ID]; dup {
			p.errorf(ls.a.Line, "%s: %s: duplicate step id %q (also at line %d)", what, ls.list, ls.a.ID, prev.a.Line)
			continue
		}
		ids[ls.a.ID] = ls
	}
	for _, ls := range ruleSteps(r) {
		p.checkRefs(ls, ids, stepsOf(r, ls.list), what)
	}
}

// ruleSteps lists the steps of r, list by list.
func ruleSteps(r *Rule) []listStep {
	var out []listStep
	for _, l := range []string{"actions", "escalate", "on_resolved"} {
		for _, a := range stepsOf(r, l) {
			out = append(out, listStep{l, a})
		}
	}
	return out
}

func stepsOf(r *Rule, list string) []*Action {
	switch list {
	case "actions":
		return r.Actions
	case "escalate":
		return r.Escalate
	}
	return r.OnResolved
}

// checkRefs checks the references of one step ls of list and fills its Refs and deferred params.
func (p *parser) checkRefs(ls listStep, ids map[string]listStep, list []*Action, what string) {
	a := ls.a
	where := what + ": " + ls.list + ": " + a.Handler
	self := slices.Index(list, a)
	sc, _ := p.cat.(StepCatalog)
	for i, k := range a.keys {
		for _, u := range a.vals[i].stepRefs(nil) {
			ref, msg := resolveRef(u.StepRef, ids, list, self, ls.list, sc)
			if msg == "" && sc != nil && sc.TargetParam(a.Handler, k) {
				msg = fmt.Sprintf("param %q names what the action acts on: it may not reference an earlier step's result (a step's target is fixed when it is planned)", k)
			}
			if msg != "" {
				p.errorf(u.line, "%s: param %s: %s: %s", where, k, u.StepRef, msg)
				continue
			}
			if !slices.Contains(a.Refs, ref) {
				a.Refs = append(a.Refs, ref)
			}
		}
	}
	a.deferred = a.chainedKeys()
}

// resolveRef finds the step a reference reads (list[self] holds it) or says what is wrong with it.
func resolveRef(r StepRef, ids map[string]listStep, list []*Action, self int, listName string, sc StepCatalog) (StepRef, string) {
	target, ok := ids[r.ID]
	switch {
	case !ok:
		return r, fmt.Sprintf("no step has id %q%s", r.ID, earlierIDs(list[:self]))
	case target.list != listName:
		return r, fmt.Sprintf("step %q is in %s: a step may only read the results of earlier steps of its own list (%s)", r.ID, target.list, listName)
	}
	r.Step = slices.Index(list, target.a)
	if r.Step >= self {
		what := "a later step"
		if r.Step == self {
			what = "this step itself"
		}
		return r, fmt.Sprintf("step %q is %s: a step may only read the results of earlier steps", r.ID, what)
	}
	if sc == nil {
		return r, ""
	}
	fields, _ := sc.ResultFields(target.a.Handler)
	if !slices.Contains(fields, r.Field) {
		list := "it declares none"
		if len(fields) > 0 {
			list = "fields: " + strings.Join(fields, ", ")
		}
		return r, fmt.Sprintf("step %q (%s) has no result field %q (%s)", r.ID, target.a.Handler, r.Field, list)
	}
	return r, ""
}

// earlierIDs lists the ids of steps, for an error message.
func earlierIDs(steps []*Action) string {
	var ids []string
	for _, s := range steps {
		if s.ID != "" {
			ids = append(ids, s.ID)
		}
	}
	if len(ids) == 0 {
		return " (no earlier step of this list has an id)"
	}
	return " (earlier steps of this list: " + strings.Join(ids, ", ") + ")"
}

// stepID reads and checks an action's id.
func (p *parser) stepID(n *yaml.Node, what string) string {
	id, ok := p.scalar(n, what+": id")
	if !ok || n == nil {
		return ""
	}
	id = strings.TrimSpace(id)
	if !reStepID.MatchString(id) || len(id) > maxStepID {
		p.errorf(p.deref(n).Line, "%s: id %q must be a name: a lower-case letter, then lower-case letters, digits or _ (at most %d)", what, id, maxStepID)
		return ""
	}
	return id
}

// CompileDeferred compiles, when a chained step runs, the params it deferred (Action.Deferred), from
// their values as written in the rule (the engine stored them with the step when it planned it):
// what Render of the returned action gives for an Env with the steps' results (WithSteps) is
// what the rule's own action would give. The templates were checked when the rule loaded; cat
// (the handler registry) escapes URL params and resolves secret names as at load.
func CompileDeferred(handler string, raw map[string]any, cat Catalog) (*Action, error) {
	p := &parser{file: "deferred params", cat: cat, budget: maxNodes, use: &usage{}}
	a := &Action{Handler: handler, Params: raw}
	for _, k := range slices.Sorted(maps.Keys(raw)) {
		var n yaml.Node
		if err := n.Encode(raw[k]); err != nil {
			return nil, fmt.Errorf("param %q: %w", k, err)
		}
		_, node := p.value(&n, "param "+k)
		a.keys = append(a.keys, k)
		a.vals = append(a.vals, node)
	}
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	a.vals = p.escapeURLs(handler, a.keys, a.vals)
	a.deferred = a.keys
	return a, nil
}

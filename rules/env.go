package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"

	"github.com/responder-sre/responder/alert"
)

// Env is what `when` expressions and templates see. Build one per alert with NewEnv.
type Env struct {
	Alert AlertEnv `expr:"alert"`

	now    time.Time
	firing FiringSet
	// steps are the results of earlier steps by id, then field (WithSteps); nil: none.
	steps map[string]map[string]any
}

// AlertEnv is the `alert` variable of the expression environment (DESIGN.md §4).
type AlertEnv struct {
	Name        string            `expr:"name"`
	Source      string            `expr:"source"`
	Status      string            `expr:"status"`
	Labels      map[string]string `expr:"labels"`
	Annotations map[string]string `expr:"annotations"`
	Value       float64           `expr:"value"` // NaN when the source reported none
	StartsAt    time.Time         `expr:"startsAt"`
	EndsAt      time.Time         `expr:"endsAt"`
	ActiveFor   time.Duration     `expr:"activeFor"`
	Fingerprint string            `expr:"fingerprint"`
	// Drill is true when the alert belongs to a drill (a non-empty responder_drill label), so a
	// rule can match drills or exclude them (`&& !alert.drill`).
	Drill bool `expr:"drill"`
}

// FiringSet answers firing(name[, labels]) from a snapshot taken once per batch: no I/O.
type FiringSet interface {
	// Firing reports whether an alert called name is firing whose labels include labels (nil: any).
	Firing(name string, labels map[string]string) bool
}

// NewEnv returns the environment for evaluating rules against a at now. firing may be nil (then
// firing() is false). The alert's label and annotation maps are shared, not copied: do not mutate
// them while the Env is in use.
func NewEnv(a alert.Alert, now time.Time, firing FiringSet) *Env {
	return &Env{
		Alert: AlertEnv{
			Name:        a.Name,
			Source:      a.Source,
			Status:      string(a.Status),
			Labels:      a.Labels,
			Annotations: a.Annotations,
			Value:       a.ValueOrNaN(),
			StartsAt:    a.StartsAt,
			EndsAt:      a.EndsAt,
			ActiveFor:   a.ActiveFor(now),
			Fingerprint: a.Fingerprint,
			Drill:       a.Drill() != "",
		},
		now:    now,
		firing: firing,
	}
}

// ErrMissing is matched (errors.Is) by the render error of a template that references a label or
// annotation the alert does not have.
var ErrMissing = errors.New("missing key")

// MissingError names the missing label or annotation.
type MissingError struct {
	Kind string // "label" or "annotation"
	Key  string
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("the alert has no %s %q", e.Kind, e.Key)
}

// Is makes errors.Is(err, ErrMissing) true.
func (e *MissingError) Is(target error) bool { return target == ErrMissing }

// Names of the internal functions the patchers insert. They cannot be written in a rule (the expr
// lexer does not produce identifiers starting with '@'), so they are not part of the language.
const (
	fnLabel      = "@label"
	fnAnnotation = "@annotation"
	fnGet        = "@get"
	fnLookup     = "@lookup"
)

// exprEnvArgument is expr's name for the environment passed to Run.
const exprEnvArgument = "$env"

var (
	alertEnvType = reflect.TypeOf(AlertEnv{})
	mapStrStr    = reflect.TypeOf(map[string]string(nil))
	errNoEnv     = errors.New("rules: expression run without a *rules.Env")
)

func envOf(v any) (*Env, error) {
	e, ok := v.(*Env)
	if !ok || e == nil {
		return nil, errNoEnv
	}
	return e, nil
}

func fnNow(params ...any) (any, error) {
	e, err := envOf(params[0])
	if err != nil {
		return nil, err
	}
	return e.now, nil
}

func fnFiring(params ...any) (any, error) {
	e, err := envOf(params[0])
	if err != nil {
		return nil, err
	}
	name, _ := params[1].(string)
	var labels map[string]string
	if len(params) > 2 {
		switch m := params[2].(type) {
		case map[string]string:
			labels = m
		case map[string]any:
			labels = make(map[string]string, len(m))
			for k, v := range m {
				s, ok := v.(string)
				if !ok {
					return nil, fmt.Errorf("firing(): label %q must be a string, not %T", k, v)
				}
				labels[k] = s
			}
		case nil:
		default:
			return nil, fmt.Errorf("firing(): labels must be a map, not %T", m)
		}
	}
	if e.firing == nil {
		return false, nil
	}
	return e.firing.Firing(name, labels), nil
}

func fnToJSON(params ...any) (any, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(params[0]); err != nil {
		return nil, fmt.Errorf("toJSON: %w", err)
	}
	return string(bytes.TrimSuffix(buf.Bytes(), []byte{'\n'})), nil
}

func fnSecret(...any) (any, error) { return nil, errSecretAlone }

func requireKey(kind string) func(params ...any) (any, error) {
	return func(params ...any) (any, error) {
		m, _ := params[0].(map[string]string)
		k, _ := params[1].(string)
		v, ok := m[k]
		if !ok {
			return nil, &MissingError{Kind: kind, Key: k}
		}
		return v, nil
	}
}

func fnGetKey(params ...any) (any, error) {
	m, _ := params[0].(map[string]string)
	k, _ := params[1].(string)
	return m[k], nil
}

func fnLookupKey(params ...any) (any, error) {
	m, _ := params[0].(map[string]string)
	k, _ := params[1].(string)
	if v, ok := m[k]; ok {
		return v, nil
	}
	return nil, nil
}

// usage records what a compiled expression uses.
type usage struct {
	firing bool
	// probe: probe() is called (it reads the firing snapshot, so firing is set too); probes are
	// the literal names it is called with, in order.
	probe  bool
	probes []string
}

// envInjector passes the environment to now() and firing() as a hidden first argument, so the
// functions read the Env's clock and firing snapshot without closures per alert.
type envInjector struct{ u *usage }

func (p envInjector) Visit(node *ast.Node) {
	call, ok := (*node).(*ast.CallNode)
	if !ok {
		return
	}
	id, ok := call.Callee.(*ast.IdentifierNode)
	if !ok || (id.Value != "now" && id.Value != "firing" && id.Value != "probe") {
		return
	}
	if len(call.Arguments) > 0 {
		if a, ok := call.Arguments[0].(*ast.IdentifierNode); ok && a.Value == exprEnvArgument {
			return // already injected
		}
	}
	if id.Value == "firing" {
		p.u.firing = true
	}
	if id.Value == "probe" {
		p.u.firing, p.u.probe = true, true
		if len(call.Arguments) > 0 {
			if s, ok := call.Arguments[0].(*ast.StringNode); ok {
				p.u.probes = append(p.u.probes, s.Value)
			}
		}
	}
	ast.Patch(node, &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: id.Value},
		Arguments: append([]ast.Node{&ast.IdentifierNode{Value: exprEnvArgument}}, call.Arguments...),
	})
}

// keyPatcher rewrites member access on alert.labels and alert.annotations (alert.labels.x,
// alert.labels["x"]) into function calls: in templates a checked call that fails when the key is
// missing; in `when` a plain lookup ("" when missing). On the left of `??` the lookup yields nil
// when the key is missing, so `alert.labels.team ?? "none"` works in both. Optional access
// (alert.labels?.x) is left alone: it yields "" when the key is missing.
type keyPatcher struct{ template bool }

// Visit implements ast.Visitor.
func (p keyPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.MemberNode:
		p.member(node, n)
	case *ast.BinaryNode:
		if n.Operator != "??" {
			return
		}
		call, ok := n.Left.(*ast.CallNode)
		if !ok {
			return
		}
		if id, ok := call.Callee.(*ast.IdentifierNode); ok && (id.Value == fnLabel || id.Value == fnAnnotation || id.Value == fnGet) {
			id.Value = fnLookup
		}
	}
}

// member replaces node, the member access n, with a call if n reads a key of alert.labels or
// alert.annotations.
func (p keyPatcher) member(node *ast.Node, n *ast.MemberNode) {
	field, ok := alertMapField(n)
	if !ok {
		return
	}
	fn := fnGet
	if p.template {
		fn = fnLabel
		if field == "annotations" {
			fn = fnAnnotation
		}
	}
	ast.Patch(node, &ast.CallNode{
		Callee:    &ast.IdentifierNode{Value: fn},
		Arguments: []ast.Node{n.Node, n.Property},
	})
}

// alertMapField returns "labels" or "annotations" if n is a non-optional key access on that map
// of the alert (alert.labels.x, alert.labels["x"]).
func alertMapField(n *ast.MemberNode) (string, bool) {
	if n.Optional {
		return "", false
	}
	inner, ok := n.Node.(*ast.MemberNode)
	if !ok {
		return "", false
	}
	prop, ok := inner.Property.(*ast.StringNode)
	if !ok || (prop.Value != "labels" && prop.Value != "annotations") {
		return "", false
	}
	if t := inner.Node.Type(); t == nil || (t != alertEnvType && (t.Kind() != reflect.Pointer || t.Elem() != alertEnvType)) {
		return "", false
	}
	if t := inner.Type(); t != mapStrStr {
		return "", false
	}
	return prop.Value, true
}

// compileOptions are the options every expression is compiled with.
func compileOptions(u *usage, template bool) []expr.Option {
	return []expr.Option{
		expr.Env(Env{}),
		expr.Function("now", fnNow, new(func(*Env) time.Time)),
		expr.Function("firing", fnFiring,
			new(func(*Env, string) bool),
			new(func(*Env, string, map[string]string) bool),
			new(func(*Env, string, map[string]any) bool),
		),
		expr.Function("probe", fnProbe, new(func(*Env, string) ProbeResult)),
		expr.Function("toJSON", fnToJSON, new(func(any) string)),
		expr.Function("humanize", fnHumanize, new(func(any) string)),
		expr.Function("humanizePercentage", fnHumanizePercentage, new(func(any) string)),
		expr.Function("humanizeDuration", fnHumanizeDuration, new(func(any) string)),
		expr.Function("printf", fnPrintf, new(func(string, ...any) string)),
		// secret("NAME") is recognised before compiling (see secretCall); this declaration only
		// lets a misuse compile far enough to be reported.
		expr.Function("secret", fnSecret, new(func(string) string)),
		expr.Function(fnLabel, requireKey("label"), new(func(map[string]string, string) string)),
		expr.Function(fnAnnotation, requireKey("annotation"), new(func(map[string]string, string) string)),
		expr.Function(fnGet, fnGetKey, new(func(map[string]string, string) string)),
		expr.Function(fnLookup, fnLookupKey, new(func(map[string]string, string) any)),
		expr.Function(fnStep, fnStepResult, new(func(*Env, string, string) any)),
		expr.Patch(envInjector{u: u}),
		expr.Patch(keyPatcher{template: template}),
	}
}

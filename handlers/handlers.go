// Package handlers defines the seam between the engine and the kinds of remediation responder can
// run: a Handler declares its Spec and builds an Action from rendered params; the Action checks
// (read-only) and does (idempotently). Implementations live one package each below this one
// (handlers/httpreq, handlers/page, handlers/k8s, handlers/postgres; page.slack in notify/slack).
// Each such package has one constructor of the same shape, a Constructor taking an Env, and
// handlers/builtin lists them, one line each: serve, `rules check` and `rules test` build the
// same registry from it. There is no init() registration.
//
// The engine talks to an action with explicit arguments, never through context values: Resolve
// (handlers.Resolver) makes the lookup a target needs, with the caller's context; Do gets the
// action id, incident id and idempotency key in an Invocation.
package handlers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/vocab"
)

// Approval is whether a human must approve an action before it runs.
type Approval string

// Approval modes.
const (
	ApprovalNone     Approval = "none"
	ApprovalRequired Approval = "required"
)

// ParamType is the type a param must have once rendered.
type ParamType int

// Param types. Numbers decode from YAML as int or float; Duration accepts Go/Prometheus durations.
const (
	String ParamType = iota
	Int
	Bool
	Duration
	StringList
	StringMap
	Any
)

// StandIn is the value a result field of type t stands for while a chained step that reads it is
// planned (before the field's step ran): 1 for an integer, false for a boolean, else ref, the
// reference as written.
func (t ParamType) StandIn(ref string) any {
	switch t {
	case Int:
		return 1
	case Bool:
		return false
	}
	return ref
}

func (t ParamType) String() string {
	switch t {
	case String:
		return "string"
	case Int:
		return "integer"
	case Bool:
		return "boolean"
	case Duration:
		return "duration"
	case StringList:
		return "list of strings"
	case StringMap:
		return "map of strings"
	default:
		return "any"
	}
}

// Param declares one parameter of a handler.
type Param struct {
	Name     string
	Type     ParamType
	Required bool
	// Static params may not contain {{ }} templates (checked at load).
	Static bool
	// Secret params may hold secret("NAME") references, which the handler resolves when it calls
	// out; elsewhere a reference is a load-time error.
	Secret bool
	// URL params are URLs: values rendered into their path or query are escaped (url.PathEscape,
	// url.QueryEscape), so a label cannot change the endpoint.
	URL bool
	// Target params name what the action acts on (they make its Target and Scope). They may not
	// reference an earlier step's result (steps.<id>.result.<field>): a step's target is fixed
	// when it is planned, before the steps it references ran.
	Target bool
	Doc    string
}

// ResultField declares one field a handler fills in its Result (Result.Fields): a later step of
// the same rule reads it as {{ steps.<id>.result.<name> }}, and `rules check` refuses a reference
// to a field its handler does not declare.
type ResultField struct {
	Name string
	// Type is the field's value type once stored (String, Int or Bool; Any for anything JSON).
	Type ParamType
	Doc  string
}

// Spec describes a handler: its name (as written in rule files), params, class, approval default,
// target and scope, and an example. Everything here is checked or used at rule-load time.
type Spec struct {
	Name   string
	Doc    string
	Params []Param
	Class  vocab.Class
	// ClassParam names the param through which a rule chooses the class (http.request's
	// "class"). Without one, a rule may not lower a disruptive handler's class to notify: notify
	// actions run when paused and spend no budget.
	ClassParam string
	// DefaultApproval applies when a rule does not say; ForbidNoApproval makes `approval: none` a
	// load-time error.
	DefaultApproval  Approval
	ForbidNoApproval bool
	// DefaultTimeout bounds one Do call when the rule does not say otherwise.
	DefaultTimeout time.Duration
	// Target and Scope document what the action's Target() and Scope() return.
	Target string
	Scope  string
	// TargetPerIncident makes the engine qualify Target() with the incident (a page per incident
	// is its own target: pages for different incidents neither queue behind each other nor share
	// a cooldown).
	TargetPerIncident bool
	// ResolveParams, when set, makes the engine run the handler once more when the incident
	// resolves, for each action of it that succeeded, with these params (a page's resolve event).
	// It returns false when the action needs no resolve (it was itself a resolve).
	ResolveParams func(sent Params) (Params, bool)
	// RBAC lists the Kubernetes permissions the handler needs (namespaced unless noted); `responder
	// rbac` and the Helm chart render their Role from it.
	RBAC    []PolicyRule
	Example string
	// Results declares the fields a successful Do fills in Result.Fields, which later steps of
	// the rule may reference (chained steps).
	Results []ResultField
}

// PolicyRule is one Kubernetes RBAC rule a handler needs, in the shape of rbac/v1 PolicyRule
// (kept free of Kubernetes imports so this package stays small).
type PolicyRule struct {
	APIGroups []string
	Resources []string
	Verbs     []string
}

// Result returns the declared result field called name.
func (s Spec) Result(name string) (ResultField, bool) {
	for _, f := range s.Results {
		if f.Name == name {
			return f, true
		}
	}
	return ResultField{}, false
}

// Param returns the declared param called name.
func (s Spec) Param(name string) (Param, bool) {
	for _, p := range s.Params {
		if p.Name == name {
			return p, true
		}
	}
	return Param{}, false
}

// Params are rendered parameter values as decoded from YAML or JSON: string, bool, int, int64,
// float64, []any, map[string]any.
type Params map[string]any

// Handler is one kind of remediation.
type Handler interface {
	Spec() Spec
	// Build validates rendered params and returns the action to run. An error is a bad_param failure.
	Build(p Params) (Action, error)
}

// StaticValidator is implemented by handlers with load-time checks beyond param types. raw holds
// the params as written in the rule file: strings containing "{{" are unrendered templates.
type StaticValidator interface {
	ValidateStatic(raw Params) error
}

// Action is one built, ready-to-run action.
type Action interface {
	// Target is the canonical thing acted on (k8s namespace/kind/name, postgres cluster, http
	// method+host+path): cooldowns and the one-at-a-time execution slot of disruptive actions are
	// per target. It makes no I/O: an action whose target needs a lookup implements Resolver.
	Target() string
	// Scope is the bounded blast-radius label (namespace, cluster, host).
	Scope() string
	// Check re-confirms, read-only, that the action is still needed. ErrNotCheckable means the
	// handler cannot tell.
	Check(ctx context.Context, a alert.Alert) error
	// Do performs the action. It must be idempotent: replicas race and crashes happen. inv names
	// the run: the handler sends inv.IdempotencyKey downstream where it can.
	Do(ctx context.Context, inv Invocation, a alert.Alert) (Result, error)
}

// Invocation is what the engine tells an action about the run Do makes: which action row and
// incident it is, and the key that makes a retried or raced run act once. Handlers' own tests may
// leave any field zero.
type Invocation struct {
	// ActionID is the id of the action's row.
	ActionID int64
	// IncidentID is the incident the action belongs to (handlers use it as a dedup key, e.g.
	// page.webhook); 0 when there is none.
	IncidentID int64
	// IdempotencyKey is the key a handler sends downstream (an Idempotency-Key header, a label on
	// a Kubernetes Event, the fence marker); "" when there is none.
	IdempotencyKey string
	// Drill is the run id of the drill responder started that caused the action's incident; ""
	// for any other action. It is the store's word, never the alert's responder_drill label
	// alone: a label copied onto a real alert must not make a real page look like a drill.
	Drill string
}

// Classifier is implemented by actions whose class depends on their params (http.request's
// `class`); otherwise the class is the Spec's.
type Classifier interface {
	Class() vocab.Class
}

// Resolver is implemented by actions whose Target needs a lookup (a pod's owning workload): the
// engine calls Resolve, bounded and outside any transaction, before Target when it plans the
// action. Target itself never looks up: when Resolve failed or was not called it answers with its
// fallback.
type Resolver interface {
	Resolve(ctx context.Context) error
}

// Describer is implemented by actions that can tell an approver what they would act on: the
// engine calls Describe, bounded, when it plans an action that waits for approval, and shows the
// text with the approval request (API `evidence`, the Slack message). An error is shown instead.
type Describer interface {
	Describe(ctx context.Context) (string, error)
}

// WorkloadMember is implemented by actions whose target is a workload with several members (a
// Deployment and its pods): the storm guard's max_workload_fraction counts, per rule and target,
// the distinct members acted on against the workload's size.
type WorkloadMember interface {
	// Member is the member acted on (the pod's name).
	Member() string
	// WorkloadSize is the workload's desired size (replicas), read from the cluster.
	WorkloadSize(ctx context.Context) (int, error)
}

// Result is what a successful Do reports.
type Result struct {
	Detail string `json:"detail,omitempty"`
	// Fields are the values of the result fields the handler declares (Spec.Results), by name:
	// string, bool, int or any JSON value. The action's row keeps them (result_fields), and a
	// later step of the rule reads them as {{ steps.<id>.result.<name> }}. Never a secret.
	Fields map[string]any `json:"fields,omitempty"`
}

// ErrNotCheckable is returned by Check when a handler cannot re-confirm the condition.
var ErrNotCheckable = errors.New("handler cannot re-check the condition")

// NotCheckable is implemented by an action whose Check always answers ErrNotCheckable without
// calling anyone (a notification, a webhook). The executor then takes that answer as given: it
// decides the action in the pass that claimed it, without a callout (and a second transaction).
type NotCheckable interface {
	Action
	// NotCheckable marks the action; it is never called.
	NotCheckable()
}

// Error is a failure with a reason.
type Error struct {
	Reason vocab.Reason
	Err    error
}

func (e *Error) Error() string { return string(e.Reason) + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// Fail returns an *Error with the reason and a formatted message.
func Fail(reason vocab.Reason, format string, args ...any) error {
	return &Error{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf returns the reason of err: the Reason of an *Error in its chain, that of an
// *Interruption (paused, lease_lost), timeout for a context deadline, or "error".
func ReasonOf(err error) vocab.Reason {
	var he *Error
	var ie *Interruption
	switch {
	case errors.As(err, &he):
		return he.Reason
	case errors.As(err, &ie):
		return ie.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return vocab.ReasonTimeout
	default:
		return vocab.ReasonError
	}
}

// IsTemplate reports whether a raw param string holds a {{ }} template.
func IsTemplate(s string) bool { return strings.Contains(s, "{{") }

// Registry is the explicit set of handlers a responder runs with.
type Registry struct {
	byName  map[string]Handler
	secrets []string // names of the configured secrets, sorted
	probes  []string // names of the configured probes, sorted
}

// SetSecretNames tells the registry which named secrets exist (the config's secrets:), so that
// rule loading can refuse secret("NAME") for any other name.
func (r *Registry) SetSecretNames(names []string) {
	r.secrets = slices.Sorted(slices.Values(names))
}

// SecretNames returns the names given to SetSecretNames.
func (r *Registry) SecretNames() []string { return r.secrets }

// SetProbeNames tells the registry which probes the config defines, so that rule loading can
// refuse probe("NAME") for any other name (rules.ProbeCatalog; with none, names are not checked).
func (r *Registry) SetProbeNames(names []string) {
	r.probes = slices.Sorted(slices.Values(names))
}

// ProbeNames returns the names given to SetProbeNames.
func (r *Registry) ProbeNames() []string { return r.probes }

// URLParam reports whether param of handler is a URL (Param.URL): rule loading escapes what
// templates render into it.
func (r *Registry) URLParam(handler, param string) bool {
	h, ok := r.byName[handler]
	if !ok {
		return false
	}
	p, ok := h.Spec().Param(param)
	return ok && p.URL
}

// ResultFields returns the result fields handler declares (Spec.Results) and whether the handler
// exists: rule loading checks steps.<id>.result.<field> references against them.
func (r *Registry) ResultFields(handler string) ([]string, bool) {
	h, ok := r.byName[handler]
	if !ok {
		return nil, false
	}
	spec := h.Spec()
	names := make([]string, len(spec.Results))
	for i, f := range spec.Results {
		names[i] = f.Name
	}
	return names, true
}

// TargetParam reports whether param of handler names what the action acts on (Param.Target):
// rule loading refuses a reference to an earlier step's result in it.
func (r *Registry) TargetParam(handler, param string) bool {
	h, ok := r.byName[handler]
	if !ok {
		return false
	}
	p, ok := h.Spec().Param(param)
	return ok && p.Target
}

// NewRegistry returns a registry of hs; duplicate names are an error.
func NewRegistry(hs ...Handler) (*Registry, error) {
	r := &Registry{byName: make(map[string]Handler, len(hs))}
	for _, h := range hs {
		name := h.Spec().Name
		if _, dup := r.byName[name]; dup {
			return nil, fmt.Errorf("handler %q registered twice", name)
		}
		r.byName[name] = h
	}
	return r, nil
}

// Get returns the handler called name.
func (r *Registry) Get(name string) (Handler, bool) {
	h, ok := r.byName[name]
	return h, ok
}

// Names returns the registered handler names, sorted.
func (r *Registry) Names() []string {
	return slices.Sorted(maps.Keys(r.byName))
}

// CheckAction validates, at rule-load time, one action of a rule: the handler exists, the approval
// is allowed, every param is declared, required params are present, literal values have the right
// type, static params are not templated, and the handler's own static checks pass.
func (r *Registry) CheckAction(handler, approval string, raw map[string]any) error {
	h, ok := r.byName[handler]
	if !ok {
		return fmt.Errorf("unknown handler %q (known: %s)", handler, strings.Join(r.Names(), ", "))
	}
	spec := h.Spec()
	switch Approval(approval) {
	case "", ApprovalRequired:
	case ApprovalNone:
		if spec.ForbidNoApproval {
			return fmt.Errorf("handler %q requires approval; approval: none is not allowed", handler)
		}
	default:
		return fmt.Errorf("approval %q is neither none nor required", approval)
	}
	if err := CheckParams(spec, raw); err != nil {
		return err
	}
	if c, ok := raw["class"].(string); ok && vocab.Class(c) == vocab.ClassNotify && spec.Class == vocab.ClassDisruptive && spec.ClassParam != "class" {
		return fmt.Errorf("handler %q is disruptive: a rule may ask for disruptive but not lower it to notify", handler)
	}
	if v, ok := h.(StaticValidator); ok {
		if err := v.ValidateStatic(Params(raw)); err != nil {
			return fmt.Errorf("handler %q: %w", handler, err)
		}
	}
	return nil
}

// CheckParams checks raw params against spec. Templated strings are accepted for non-static params
// of any type (their type is checked when rendered).
func CheckParams(spec Spec, raw map[string]any) error {
	var errs []error
	keys := slices.Sorted(maps.Keys(raw))
	for _, k := range keys {
		p, ok := spec.Param(k)
		if !ok {
			names := make([]string, len(spec.Params))
			for i, sp := range spec.Params {
				names[i] = sp.Name
			}
			sort.Strings(names)
			errs = append(errs, fmt.Errorf("handler %q has no param %q (params: %s)", spec.Name, k, strings.Join(names, ", ")))
			continue
		}
		if !p.Secret && config.ContainsSecretRef(raw[k]) {
			errs = append(errs, secretParamError(spec, k))
		}
		if hasTemplate(raw[k]) {
			if p.Static {
				errs = append(errs, fmt.Errorf("param %q of handler %q may not be templated", k, spec.Name))
			}
			continue
		}
		if err := CheckType(p, raw[k]); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range spec.Params {
		if _, ok := raw[p.Name]; p.Required && !ok {
			errs = append(errs, fmt.Errorf("handler %q needs param %q", spec.Name, p.Name))
		}
	}
	return errors.Join(errs...)
}

func hasTemplate(v any) bool {
	switch v := v.(type) {
	case string:
		return IsTemplate(v)
	case []any:
		return slices.ContainsFunc(v, hasTemplate)
	case map[string]any:
		for _, e := range v {
			if hasTemplate(e) {
				return true
			}
		}
	}
	return false
}

// CheckType checks that a rendered (or literal) value has the param's type.
func CheckType(p Param, v any) error {
	bad := func() error {
		return fmt.Errorf("param %q must be a %s, not %T", p.Name, p.Type, v)
	}
	switch p.Type {
	case String:
		if _, ok := v.(string); !ok {
			return bad()
		}
	case Int:
		switch n := v.(type) {
		case int, int64, uint64:
		case float64:
			if n != float64(int64(n)) {
				return bad()
			}
		default:
			return bad()
		}
	case Bool:
		if _, ok := v.(bool); !ok {
			return bad()
		}
	case Duration:
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		if _, err := ParseDuration(s); err != nil {
			return fmt.Errorf("param %q: %w", p.Name, err)
		}
	case StringList:
		l, ok := v.([]any)
		if !ok {
			return bad()
		}
		for _, e := range l {
			if _, ok := e.(string); !ok {
				return fmt.Errorf("param %q must be a list of strings, has %T", p.Name, e)
			}
		}
	case StringMap:
		m, ok := v.(map[string]any)
		if !ok {
			return bad()
		}
		for k, e := range m {
			if _, ok := e.(string); !ok {
				return fmt.Errorf("param %q: key %q must be a string, not %T", p.Name, k, e)
			}
		}
	}
	return nil
}

// ParseDuration parses Go ("1m30s") and Prometheus ("1d", "2w") durations.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := parsePromDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

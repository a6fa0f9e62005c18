package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/file"
	"github.com/responder-sre/responder/vocab"
	"gopkg.in/yaml.v3"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/vm"
)

// Approval values an action may set.
const (
	ApprovalNone     = "none"
	ApprovalRequired = "required"
)

// Catalog validates actions at load time. *handlers.Registry implements it; app passes it in, so
// this package does not import handlers.
type Catalog interface {
	// CheckAction validates an action's handler, approval and raw params (as written: strings
	// holding "{{" are templates) at load time.
	CheckAction(handler, approval string, raw map[string]any) error
}

// SecretCatalog is implemented by a Catalog that knows the named secrets (the config's secrets:).
// With a catalog that does not, every secret("NAME") is unknown; with none, names are not checked.
type SecretCatalog interface {
	SecretNames() []string
}

// URLCatalog is implemented by a Catalog that knows which params are URLs: what templates render
// into their path or query is escaped.
type URLCatalog interface {
	URLParam(handler, param string) bool
}

// Set is the rules loaded from a list of files, in file order.
type Set struct {
	Rules []*Rule
	// Hash is the hex sha256 of all files' contents, in order.
	Hash string
	// UsesFiring is true when any rule calls firing() or probe(): the engine only builds a firing
	// snapshot then.
	UsesFiring bool
	// UsesProbe is true when any rule calls probe(): the snapshot then holds the probes' alerts.
	UsesProbe bool

	byName map[string]*Rule

	indexOnce sync.Once
	idx       *index
}

// Rule returns the rule called name, or nil.
func (s *Set) Rule(name string) *Rule {
	if s == nil {
		return nil
	}
	if s.byName != nil {
		return s.byName[name]
	}
	for _, r := range s.Rules {
		if r.Name == name {
			return r
		}
	}
	return nil
}

// Rule is one compiled rule.
type Rule struct {
	Name     string
	File     string
	FileHash string // hex sha256 of the rule's file
	Line     int
	When     string // the `when` source
	For      time.Duration
	Cooldown time.Duration
	Mode     vocab.Mode // vocab.ModeEnforce or vocab.ModeShadow
	// SlackChannel overrides slack.channel for the rule's incident messages ("" = the default).
	SlackChannel string

	Actions    []*Action
	Escalate   []*Action
	OnResolved []*Action

	// UsesFiring is true when the rule's `when`, its verify or a template calls firing() or
	// probe(); UsesProbe when one calls probe().
	UsesFiring bool
	UsesProbe  bool

	// Verify, when set, is checked after the last step of Actions succeeded (see Verify).
	Verify *Verify

	when *vm.Program
}

// Match evaluates the rule's `when` (compiled once at load) against e.
func (r *Rule) Match(e *Env) (bool, error) {
	if r.when == nil {
		return false, fmt.Errorf("rule %q was not loaded by Parse or LoadFiles", r.Name)
	}
	out, err := run(r.when, e)
	if err != nil {
		return false, fmt.Errorf("rule %q: when: %w", r.Name, err)
	}
	b, _ := out.(bool)
	return b, nil
}

// Action is one step of a rule.
type Action struct {
	// ID names the step ("" when it has none): later steps of its list read its result as
	// steps.<ID>.result.<field>.
	ID      string
	Handler string
	// Approval is "none", "required" or "" (the handler's default).
	Approval string
	// ApprovalsRequired is how many distinct approvers an action needs (0 means 1).
	ApprovalsRequired int
	// Params are the params as written in the rule file (templates unrendered).
	Params map[string]any
	// Timeout bounds one Do call; zero means the handler's default.
	Timeout time.Duration
	Line    int
	// Refs are the earlier steps' results the params read (chained steps), each once.
	Refs []StepRef

	keys []string
	vals []*pnode
	// deferred are the keys whose values read Refs (Deferred).
	deferred []string
}

// Render returns the action's params for e: every {{ expr }} rendered, recursively in lists and
// maps. A template referencing a label or annotation the alert lacks, or a step result e does not
// hold (Env.WithSteps), is an error (errors.Is ErrMissing). A string that is exactly one {{ expr }} keeps the value's type when it is a bool,
// number, list or map; other values are stringified. Literal parts of the result are shared
// between calls: treat the result as read-only.
func (a *Action) Render(e *Env) (map[string]any, error) {
	out := make(map[string]any, len(a.keys))
	for i, k := range a.keys {
		v, err := a.vals[i].render(e)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Handler, prefix(err, k))
		}
		out[k] = v
	}
	return out, nil
}

// Error is one load-time error, located in a rule file.
type Error struct {
	File string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line <= 0 {
		return e.File + ": " + e.Msg
	}
	return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
}

// LoadFiles reads and compiles the rule files at paths (already glob-expanded), in order. It
// returns every error found, each naming file:line, joined; a rule name must be unique across all
// files. A file named twice (UniqueFiles) is loaded once.
func LoadFiles(paths []string, cat Catalog) (*Set, error) {
	set := &Set{byName: make(map[string]*Rule)}
	h := sha256.New()
	var errs []error
	for _, p := range UniqueFiles(paths) {
		data, err := os.ReadFile(p)
		if err != nil {
			errs = append(errs, fmt.Errorf("rule file: %w", err))
			continue
		}
		h.Write(data)
		rs, err := Parse(data, p, cat)
		if err != nil {
			errs = append(errs, err)
		}
		for _, r := range rs {
			if prev, dup := set.byName[r.Name]; dup {
				errs = append(errs, &Error{File: r.File, Line: r.Line,
					Msg: fmt.Sprintf("duplicate rule name %q (also at %s:%d)", r.Name, prev.File, prev.Line)})
				continue
			}
			set.byName[r.Name] = r
			set.Rules = append(set.Rules, r)
			set.UsesFiring = set.UsesFiring || r.UsesFiring
			set.UsesProbe = set.UsesProbe || r.UsesProbe
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	set.Hash = hex.EncodeToString(h.Sum(nil))
	set.index() // at load, not on the first alert
	return set, nil
}

// Parse compiles one rule file. It returns the rules that are valid and every error found (each an
// *Error naming filename:line), joined.
func Parse(data []byte, filename string, cat Catalog) (rules []*Rule, err error) {
	p := &parser{file: filename, cat: cat, budget: maxNodes}
	defer func() {
		if r := recover(); r != nil { // the YAML decoder on hostile input; never crash a reload
			rules, err = nil, &Error{File: filename, Msg: fmt.Sprintf("cannot parse: %v", r)}
		}
	}()
	sum := sha256.Sum256(data)
	p.hash = hex.EncodeToString(sum[:])
	rules = p.parse(data)
	return rules, errors.Join(p.errs...)
}

// checkAction validates one decoded action against the catalog, splitting joined errors so each
// gets the action's file:line.
func (p *parser) checkAction(a *Action, what string) {
	if p.cat == nil {
		return
	}
	err := p.cat.CheckAction(a.Handler, a.Approval, a.Params)
	if err == nil {
		return
	}
	var list []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	} else {
		list = []error{err}
	}
	for _, e := range list {
		for _, line := range strings.Split(e.Error(), "\n") {
			p.errorf(a.Line, "%s: %s", what, line)
		}
	}
}

// exprError reports an expr compile error on one line: its message and, for `when`, the file line
// and column it points at.
func exprError(err error, n *yaml.Node, withColumn bool) (line int, msg string) {
	line = n.Line
	var fe *file.Error
	if !errors.As(err, &fe) {
		return line, err.Error()
	}
	msg = strings.NewReplacer("type rules.AlertEnv", "alert", "type rules.ProbeResult", "probe()").Replace(fe.Message)
	if !withColumn {
		return line, msg
	}
	if fe.Line > 1 && n.Style&yaml.LiteralStyle != 0 {
		line = n.Line + fe.Line
	} else if fe.Line > 1 && n.Style&yaml.FoldedStyle == 0 {
		line = n.Line + fe.Line - 1
	} else if n.Style&yaml.LiteralStyle != 0 {
		line = n.Line + 1
	}
	return line, fmt.Sprintf("%s (expression column %d)", msg, fe.Column+1)
}

func compileWhen(src string, u *usage) (*vm.Program, error) {
	var spot secretSpotter
	var steps stepsPatcher
	p, err := compileExpr(src, u, false, expr.AsBool(), expr.Patch(&spot), expr.Patch(&steps))
	switch {
	case steps.uses > 0:
		return nil, errors.New(`steps.<id>.result.<field> is for action params, not for when`)
	case err == nil && spot.found:
		return nil, errors.New(`secret() is for action params, not for when`)
	}
	return p, err
}

// splitYAMLError turns `yaml: line 3: msg` into (3, "msg").
func splitYAMLError(err error) (int, string) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	var line int
	if n, _ := fmt.Sscanf(msg, "line %d:", &line); n == 1 {
		if i := strings.Index(msg, ": "); i >= 0 {
			return line, "YAML: " + msg[i+2:]
		}
	}
	return 0, "YAML: " + msg
}

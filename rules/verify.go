package rules

import (
	"fmt"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"gopkg.in/yaml.v3"
)

// Verify is a rule's `verify` (issue 19): once the last step of the rule's actions succeeded, its
// condition must hold within Within, or that action's outcome becomes failed with reason
// not_recovered (the breaker counts it and the rule escalates). The condition is, by default, that
// the incident resolved; with When, that expression (over the same environment as the rule's
// `when`) is true.
//
//	verify: {within: 5m}
//	verify: {within: 5m, when: 'probe("api-health").success'}
type Verify struct {
	Within time.Duration
	// When is the condition's source; "" means the default: the incident resolved.
	When string
	// Line is the line of the verify mapping in the rule file.
	Line int

	when *vm.Program
}

// HasWhen reports whether the condition is an expression; otherwise it is the incident's
// resolution.
func (v *Verify) HasWhen() bool { return v != nil && v.when != nil }

// Holds evaluates the verify `when` (compiled once at load) against e. Without a `when` it reports
// false: the default condition is the incident's resolution, which only the engine sees.
func (v *Verify) Holds(e *Env) (bool, error) {
	if v == nil || v.when == nil {
		return false, nil
	}
	out, err := run(v.when, e)
	if err != nil {
		return false, fmt.Errorf("verify: when: %w", err)
	}
	b, _ := out.(bool)
	return b, nil
}

// Condition says what the condition is, for audit rows and errors.
func (v *Verify) Condition() string {
	if v == nil || v.When == "" {
		return "the incident resolved"
	}
	return v.When
}

var verifyKeys = []string{"within", "when"}

// verify parses a rule's `verify` mapping (nil when absent). Errors name the file and line.
func (p *parser) verify(n *yaml.Node, what string) *Verify {
	n = p.deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	what += ": verify"
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%s must be a mapping such as {within: 5m}", what)
		return nil
	}
	before := len(p.errs)
	f := p.fields(n, what, verifyKeys)
	v := &Verify{Line: n.Line}
	if wn := f["within"]; wn == nil {
		p.errorf(n.Line, "%s: within is required (how long the condition may take to hold, such as 5m)", what)
	} else {
		errs := len(p.errs)
		v.Within = p.duration(wn, what+": within")
		if len(p.errs) == errs && v.Within <= 0 {
			p.errorf(p.deref(wn).Line, "%s: within must be more than zero", what)
		}
	}
	if wn := f["when"]; wn != nil {
		src, ok := p.scalar(wn, what+": when")
		src = strings.TrimSpace(src)
		switch {
		case !ok:
		case src == "":
			p.errorf(p.deref(wn).Line, "%s: when is empty (omit it: the default is that the incident resolved)", what)
		default:
			from := len(p.use.probes)
			prog, err := compileWhen(src, p.use)
			if err != nil {
				line, msg := exprError(err, p.deref(wn), true)
				p.errorf(line, "%s: when: %s", what, msg)
				break
			}
			p.checkProbes(p.deref(wn).Line, what+": when", from)
			v.When, v.when = src, prog
		}
	}
	if len(p.errs) > before {
		return nil
	}
	return v
}

// checkVerify reports a verify on a rule without actions: it checks the last of them.
func (p *parser) checkVerify(r *Rule, f map[string]*yaml.Node, what string) {
	vn := p.deref(f["verify"])
	if vn == nil || isNull(vn) {
		return
	}
	if an := p.deref(f["actions"]); an == nil || an.Kind != yaml.SequenceNode || len(an.Content) == 0 {
		p.errorf(vn.Line, "%s: verify needs actions: it checks that the last of them helped", what)
		r.Verify = nil
	}
}

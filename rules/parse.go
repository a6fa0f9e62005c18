package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/expr-lang/expr/vm"
	"github.com/prometheus/common/model"
	"github.com/responder-sre/responder/vocab"
	"gopkg.in/yaml.v3"

	"github.com/responder-sre/responder/config"
)

// maxNodes bounds the YAML nodes one file may expand to (aliases can multiply them).
const maxNodes = 100_000

var (
	fileKeys   = []string{"rules"}
	ruleKeys   = []string{"name", "when", "for", "cooldown", "mode", "slack_channel", "actions", "escalate", "on_resolved", "verify"}
	actionKeys = []string{"handler", "params", "approval", "approvals_required", "timeout", "id"}
)

type parser struct {
	file, hash string
	cat        Catalog
	errs       []error
	budget     int
	names      map[string]int // rule name → line
	memo       map[*yaml.Node]memoValue
	use        *usage // of the rule being parsed
}

func (p *parser) errorf(line int, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) parse(data []byte) []*Rule {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty file
		}
		line, msg := splitYAMLError(err)
		p.errorf(line, "%s", msg)
		return nil
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		p.errorf(extra.Line, "a rule file holds one YAML document")
		return nil
	} else if !errors.Is(err, io.EOF) {
		line, msg := splitYAMLError(err)
		p.errorf(line, "%s", msg)
		return nil
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	root := p.deref(doc.Content[0])
	if root == nil || isNull(root) {
		return nil
	}
	if root.Kind != yaml.MappingNode {
		p.errorf(root.Line, "a rule file must be a mapping with a rules: list")
		return nil
	}
	fields := p.fields(root, "rule file", fileKeys)
	list := p.deref(fields["rules"])
	if list == nil || isNull(list) {
		return nil
	}
	if list.Kind != yaml.SequenceNode {
		p.errorf(list.Line, "rules must be a list")
		return nil
	}
	p.names = make(map[string]int)
	var rules []*Rule
	for _, n := range list.Content {
		if r := p.rule(n); r != nil {
			rules = append(rules, r)
		}
	}
	return rules
}

// deref follows aliases, charging the node budget.
func (p *parser) deref(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// fields returns a mapping's values by key, reporting unknown and duplicate keys.
func (p *parser) fields(n *yaml.Node, what string, allowed []string) map[string]*yaml.Node {
	out := make(map[string]*yaml.Node, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := p.deref(n.Content[i])
		key := k.Value
		switch {
		case k.Kind != yaml.ScalarNode:
			p.errorf(k.Line, "%s: keys must be strings", what)
			continue
		case !contains(allowed, key):
			p.errorf(k.Line, "%s: unknown key %q (allowed: %s)", what, key, strings.Join(allowed, ", "))
			continue
		case out[key] != nil:
			p.errorf(k.Line, "%s: duplicate key %q", what, key)
			continue
		}
		out[key] = n.Content[i+1]
	}
	return out
}

func contains(list []string, s string) bool {
	for _, e := range list {
		if e == s {
			return true
		}
	}
	return false
}

// scalar returns the string value of a scalar node; ok is false (and an error reported) for a
// list or map.
func (p *parser) scalar(n *yaml.Node, what string) (string, bool) {
	n = p.deref(n)
	if n == nil || isNull(n) {
		return "", true
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n.Line, "%s must be a string", what)
		return "", false
	}
	return n.Value, true
}

func (p *parser) rule(n *yaml.Node) *Rule {
	n = p.deref(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "a rule must be a mapping")
		return nil
	}
	before := len(p.errs)
	r := &Rule{File: p.file, FileHash: p.hash, Line: n.Line, Mode: vocab.ModeEnforce}
	p.use = &usage{}
	r.Name = p.peekName(n)
	what := "rule"
	if r.Name != "" {
		what = fmt.Sprintf("rule %q", r.Name)
	}
	f := p.fields(n, what, ruleKeys)
	p.checkName(r, n, f, what)
	r.When, r.when = p.when(n, f, what)
	r.For = p.duration(f["for"], what+": for")
	r.Cooldown = p.duration(f["cooldown"], what+": cooldown")
	p.modeAndChannel(r, f, what)

	r.Actions = p.actions(f["actions"], what+": actions")
	r.Escalate = p.actions(f["escalate"], what+": escalate")
	r.OnResolved = p.actions(f["on_resolved"], what+": on_resolved")
	p.checkSteps(r, what)
	if len(r.Actions) == 0 && len(r.Escalate) == 0 && len(r.OnResolved) == 0 && len(p.errs) == before {
		p.errorf(n.Line, "%s does nothing: it needs actions, escalate or on_resolved", what)
	}
	r.Verify = p.verify(f["verify"], what)
	p.checkVerify(r, f, what)
	r.UsesFiring, r.UsesProbe = p.use.firing, p.use.probe
	if len(p.errs) > before {
		return nil
	}
	return r
}

// peekName returns the name of the rule n (trimmed) before its fields are checked, so that their
// errors can name the rule; "" if it has none or it is not a string.
func (p *parser) peekName(n *yaml.Node) string {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := p.deref(n.Content[i]); k.Kind == yaml.ScalarNode && k.Value == "name" {
			if v := p.deref(n.Content[i+1]); v.Kind == yaml.ScalarNode {
				return strings.TrimSpace(v.Value)
			}
			return ""
		}
	}
	return ""
}

// checkName reports a rule without a name (r.Name is cleared if it is not a string) or with the
// name of an earlier rule, and records r's name.
func (p *parser) checkName(r *Rule, n *yaml.Node, f map[string]*yaml.Node, what string) {
	if _, ok := p.scalar(f["name"], what+": name"); !ok {
		r.Name = ""
	}
	if r.Name == "" {
		p.errorf(n.Line, "rule has no name")
		return
	}
	if prev, dup := p.names[r.Name]; dup {
		p.errorf(n.Line, "duplicate rule name %q (also at %s:%d)", r.Name, p.file, prev)
	} else {
		p.names[r.Name] = n.Line
	}
}

// when returns the rule's when expression (trimmed) and its compiled program (nil if it is
// missing, empty or does not compile, which are reported).
func (p *parser) when(n *yaml.Node, f map[string]*yaml.Node, what string) (string, *vm.Program) {
	when, ok := p.scalar(f["when"], what+": when")
	when = strings.TrimSpace(when)
	switch {
	case !ok:
		return when, nil
	case when == "":
		line := n.Line
		if f["when"] != nil {
			line = f["when"].Line
		}
		p.errorf(line, "%s: when is empty", what)
		return when, nil
	}
	from := len(p.use.probes)
	prog, err := compileWhen(when, p.use)
	if err != nil {
		line, msg := exprError(err, p.deref(f["when"]), true)
		p.errorf(line, "%s: when: %s", what, msg)
	} else {
		p.checkProbes(p.deref(f["when"]).Line, what+": when", from)
	}
	return when, prog
}

// modeAndChannel sets r.Mode and r.SlackChannel from their fields, reporting invalid values.
func (p *parser) modeAndChannel(r *Rule, f map[string]*yaml.Node, what string) {
	if mode, ok := p.scalar(f["mode"], what+": mode"); ok && mode != "" {
		if !slices.Contains(vocab.Modes, vocab.Mode(mode)) {
			p.errorf(f["mode"].Line, "%s: mode %q is neither enforce nor shadow", what, mode)
		}
		r.Mode = vocab.Mode(mode)
	}
	if ch, ok := p.scalar(f["slack_channel"], what+": slack_channel"); ok && ch != "" {
		if !config.IsSlackChannel(ch) {
			p.errorf(f["slack_channel"].Line, "%s: slack_channel %q is neither #name nor a channel ID", what, ch)
		}
		r.SlackChannel = ch
	}
}

// duration parses a Go ("90s", "1m30s") or Prometheus ("1d", "2w") duration; absent is zero.
func (p *parser) duration(n *yaml.Node, what string) time.Duration {
	s, ok := p.scalar(n, what)
	if !ok || s == "" {
		return 0
	}
	d, err := ParseDuration(s)
	if err != nil {
		p.errorf(p.deref(n).Line, "%s: %v", what, err)
		return 0
	}
	if d < 0 {
		p.errorf(p.deref(n).Line, "%s: duration %q is negative", what, s)
		return 0
	}
	return d
}

// ParseDuration parses Go ("1m30s") and Prometheus ("1d", "2w") durations.
func ParseDuration(s string) (time.Duration, error) {
	if d, err := time.ParseDuration(s); err == nil {
		return d, nil
	}
	d, err := model.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return time.Duration(d), nil
}

func (p *parser) actions(n *yaml.Node, what string) []*Action {
	n = p.deref(n)
	if n == nil || isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n.Line, "%s must be a list", what)
		return nil
	}
	out := make([]*Action, 0, len(n.Content))
	for _, an := range n.Content {
		if a := p.action(an, what); a != nil {
			out = append(out, a)
		}
	}
	return out
}

func (p *parser) action(n *yaml.Node, what string) *Action {
	n = p.deref(n)
	if n.Kind != yaml.MappingNode {
		p.errorf(n.Line, "%s: an action must be a mapping", what)
		return nil
	}
	before := len(p.errs)
	f := p.fields(n, what, actionKeys)
	a := &Action{Line: n.Line}
	handler, _ := p.scalar(f["handler"], what+": handler")
	a.Handler = strings.TrimSpace(handler)
	if a.Handler == "" {
		p.errorf(n.Line, "%s: action has no handler", what)
	} else {
		what += ": " + a.Handler
	}
	approval, ok := p.scalar(f["approval"], what+": approval")
	if ok && approval != "" && approval != ApprovalNone && approval != ApprovalRequired {
		p.errorf(f["approval"].Line, "%s: approval %q is neither none nor required", what, approval)
		approval = ""
	}
	a.Approval = approval
	a.ID = p.stepID(f["id"], what)
	if n := f["approvals_required"]; n != nil {
		s, _ := p.scalar(n, what+": approvals_required")
		k, err := strconv.Atoi(strings.TrimSpace(s))
		switch {
		case err != nil || k < 1 || k > 5:
			p.errorf(n.Line, "%s: approvals_required must be an integer from 1 to 5, not %q", what, s)
		case approval == ApprovalNone:
			p.errorf(n.Line, "%s: approvals_required needs approval: required (or the handler's default)", what)
		default:
			a.ApprovalsRequired = k
		}
	}
	a.Timeout = p.duration(f["timeout"], what+": timeout")
	a.Params = map[string]any{}
	if pn := p.deref(f["params"]); pn != nil && !isNull(pn) {
		if pn.Kind != yaml.MappingNode {
			p.errorf(pn.Line, "%s: params must be a mapping", what)
		} else {
			raw, node := p.value(pn, what+": param ")
			if m, ok := raw.(map[string]any); ok {
				a.Params = m
				a.keys, a.vals = node.keys, p.escapeURLs(a.Handler, node.keys, node.vals)
			}
		}
	}
	if a.Handler != "" && len(p.errs) == before {
		p.checkAction(a, what)
	}
	if len(p.errs) > before {
		return nil
	}
	return a
}

// value converts a params YAML node into its raw value and compiled form. where names the param for
// errors ("rule "x": actions: http.request: param body").
// A node reached again through an alias is converted once (its templates compiled once) but its
// size is charged to the budget every time, so an alias bomb still fails fast.
func (p *parser) value(n *yaml.Node, where string) (any, *pnode) {
	n = p.deref(n)
	if m, ok := p.memo[n]; ok {
		if p.charge(n, m.size) {
			p.use.firing = p.use.firing || m.firing
			p.use.probe = p.use.probe || m.probe
			return m.raw, m.node
		}
		return nil, &pnode{}
	}
	if !p.charge(n, 1) {
		return nil, &pnode{}
	}
	start, firing, probe := p.budget, p.use.firing, p.use.probe
	p.use.firing, p.use.probe = false, false
	raw, node := p.convert(n, where)
	if p.memo == nil {
		p.memo = make(map[*yaml.Node]memoValue)
	}
	p.memo[n] = memoValue{raw: raw, node: node, size: start - p.budget + 1, firing: p.use.firing, probe: p.use.probe}
	p.use.firing = firing || p.use.firing
	p.use.probe = probe || p.use.probe
	return raw, node
}

type memoValue struct {
	raw    any
	node   *pnode
	size   int
	firing bool // the subtree calls firing() or probe()
	probe  bool // the subtree calls probe()
}

// charge spends n units of the node budget, reporting once when it runs out.
func (p *parser) charge(at *yaml.Node, n int) bool {
	if p.budget <= 0 {
		return false
	}
	p.budget -= n
	if p.budget <= 0 {
		p.errorf(at.Line, "params expand to more than %d YAML nodes", maxNodes)
		return false
	}
	return true
}

func (p *parser) convert(n *yaml.Node, where string) (any, *pnode) {
	switch n.Kind {
	case yaml.SequenceNode:
		raw := make([]any, len(n.Content))
		node := &pnode{kind: pList, list: make([]*pnode, len(n.Content))}
		for i, c := range n.Content {
			raw[i], node.list[i] = p.value(c, fmt.Sprintf("%s[%d]", where, i))
			node.dirty = node.dirty || node.list[i].dirty
		}
		node.lit = raw
		return raw, node
	case yaml.MappingNode:
		raw := make(map[string]any, len(n.Content)/2)
		node := &pnode{kind: pMap, lit: raw}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := p.deref(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				p.errorf(k.Line, "%s: keys must be strings", strings.TrimSuffix(where, " "))
				continue
			}
			if _, dup := raw[k.Value]; dup {
				p.errorf(k.Line, "%s: duplicate key %q", strings.TrimSuffix(where, " "), k.Value)
				continue
			}
			sub := where + k.Value
			if !strings.HasSuffix(where, " ") {
				sub = where + "." + k.Value
			}
			v, c := p.value(n.Content[i+1], sub)
			raw[k.Value] = v
			node.keys = append(node.keys, k.Value)
			node.vals = append(node.vals, c)
			node.dirty = node.dirty || c.dirty
		}
		return raw, node
	case yaml.ScalarNode:
		if n.ShortTag() == "!!str" {
			if !strings.Contains(n.Value, "{{") {
				return n.Value, &pnode{lit: n.Value}
			}
			from := len(p.use.probes)
			t, err := compileTemplate(n.Value, p.use, n.Line)
			if err == nil {
				p.checkProbes(n.Line, where, from)
			}
			if err != nil {
				msg := err.Error()
				if te, ok := errors.AsType[*templateError](err); ok {
					_, m := exprError(te.err, n, false)
					msg = "template {{ " + te.src + " }}: " + m
				}
				p.errorf(n.Line, "%s: %s", where, msg)
				return n.Value, &pnode{lit: n.Value}
			}
			p.checkSecrets(n, where, t)
			return n.Value, &pnode{kind: pTemplate, tmpl: t, dirty: true}
		}
		var v any
		if err := n.Decode(&v); err != nil {
			p.errorf(n.Line, "%s: %v", where, err)
			return nil, &pnode{}
		}
		if _, ok := v.(time.Time); ok {
			v = n.Value
		}
		return v, &pnode{lit: v}
	}
	p.errorf(n.Line, "%s: unsupported YAML node", where)
	return nil, &pnode{}
}

// checkSecrets reports the secrets a template references that the catalog does not know.
func (p *parser) checkSecrets(n *yaml.Node, where string, t *template) {
	if p.cat == nil {
		return
	}
	var known []string
	if sc, ok := p.cat.(SecretCatalog); ok {
		known = sc.SecretNames()
	}
	for _, name := range t.secretNames() {
		if slices.Contains(known, name) {
			continue
		}
		list := "none defined in the config"
		if len(known) > 0 {
			list = strings.Join(known, ", ")
		}
		p.errorf(n.Line, "%s: unknown secret %q (secrets: %s)", where, name, list)
	}
}

// escapeURLs returns vals with the templates of URL params (URLCatalog) escaping what they render.
// The nodes may be shared through YAML aliases, so they are copied, not changed.
func (p *parser) escapeURLs(handler string, keys []string, vals []*pnode) []*pnode {
	uc, ok := p.cat.(URLCatalog)
	if !ok {
		return vals
	}
	out := slices.Clone(vals)
	for i, k := range keys {
		if n := out[i]; n.kind == pTemplate && uc.URLParam(handler, k) {
			c := *n
			c.tmpl = n.tmpl.forURL()
			out[i] = &c
		}
	}
	return out
}

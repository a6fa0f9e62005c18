package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/vm"

	"github.com/responder-sre/responder/config"
)

// vms reuses expr VMs (their stacks) across evaluations; a VM is not safe for concurrent use.
var vms = sync.Pool{New: func() any { return new(vm.VM) }}

func run(p *vm.Program, e *Env) (any, error) {
	m := vms.Get().(*vm.VM)
	out, err := m.Run(p, e)
	vms.Put(m)
	return out, err
}

// compileExpr compiles src once, recovering from a panic in the compiler (a bad rule file must
// never crash the daemon).
func compileExpr(src string, u *usage, template bool, extra ...expr.Option) (p *vm.Program, err error) {
	defer func() {
		if r := recover(); r != nil {
			p, err = nil, fmt.Errorf("expression compiler panicked: %v", r)
		}
	}()
	return expr.Compile(src, append(compileOptions(u, template), extra...)...)
}

// segment is literal text or one compiled {{ expr }}.
type segment struct {
	text string
	src  string // the expression, trimmed; "" for literal text
	prog *vm.Program
	// secret names the secret of a {{ secret("NAME") }} segment: it is never evaluated but
	// rendered as config.SecretRef(NAME), which the handler resolves when it calls out.
	secret string
	// esc escapes the value where it lands in a URL param (its path or query); nil elsewhere.
	esc func(string) string
}

// template is a param string holding at least one {{ expr }}.
type template struct {
	raw    string
	segs   []segment
	single bool // the string is exactly one {{ expr }}
	// refs are the steps.<id>.result.<field> the template reads (chained steps), line where it is.
	refs []StepRef
	line int
}

// splitTemplate cuts s into literal text and {{ expr }} sources. An expression ends at the first
// "}}" outside string literals and outside braces opened within it, so
// {{ toJSON({a: {b: 1}}) }} is one expression.
func splitTemplate(s string) ([]segment, error) {
	var segs []segment
	for {
		i := strings.Index(s, "{{")
		if i < 0 {
			if s != "" {
				segs = append(segs, segment{text: s})
			}
			return segs, nil
		}
		if i > 0 {
			segs = append(segs, segment{text: s[:i]})
		}
		body := s[i+2:]
		end := exprEnd(body)
		if end < 0 {
			return nil, errors.New(`unterminated "{{" (missing "}}")`)
		}
		src := strings.TrimSpace(body[:end])
		if src == "" {
			return nil, errors.New(`empty template "{{ }}"`)
		}
		segs = append(segs, segment{src: src})
		s = body[end+2:]
	}
}

// exprEnd returns the index of the "}}" closing the expression at the start of s, or -1.
func exprEnd(s string) int {
	depth := 0
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if quote != 0 {
			switch {
			case c == '\\' && quote != '`':
				i++
			case c == quote:
				quote = 0
			}
			continue
		}
		switch c {
		case '"', '\'', '`':
			quote = c
		case '{':
			depth++
		case '}':
			if depth == 0 {
				if i+1 < len(s) && s[i+1] == '}' {
					return i
				}
				continue
			}
			depth--
		}
	}
	return -1
}

func compileTemplate(raw string, u *usage, line int) (*template, error) {
	segs, err := splitTemplate(raw)
	if err != nil {
		return nil, err
	}
	t := &template{raw: raw, segs: segs, single: len(segs) == 1 && segs[0].src != "", line: line}
	for i := range t.segs {
		sg := &t.segs[i]
		if sg.src == "" {
			continue
		}
		if name, ok := secretCall(sg.src); ok {
			if !config.ValidSecretName(name) {
				return nil, &templateError{src: sg.src, err: fmt.Errorf("%q is not a secret name", name)}
			}
			sg.secret = name
			continue
		}
		var spot secretSpotter
		var steps stepsPatcher
		p, err := compileExpr(sg.src, u, true, expr.Patch(&spot), expr.Patch(&steps))
		err = steps.stepsError(err)
		if err == nil && spot.found {
			err = errSecretAlone
		}
		if err != nil {
			return nil, &templateError{src: sg.src, err: err}
		}
		sg.prog = p
		t.refs = append(t.refs, steps.refs...)
	}
	return t, nil
}

// secretNames returns the names of the secrets the template references.
func (t *template) secretNames() []string {
	var out []string
	for _, sg := range t.segs {
		if sg.secret != "" {
			out = append(out, sg.secret)
		}
	}
	return out
}

// forURL returns a copy of t whose rendered values are escaped for where they land in a URL:
// url.PathEscape before the first literal '?', url.QueryEscape after it, so a value cannot add a
// path segment, a query parameter or a fragment. Secret references are left as they are.
func (t *template) forURL() *template {
	c := *t
	c.segs = append([]segment(nil), t.segs...)
	esc := url.PathEscape
	for i := range c.segs {
		sg := &c.segs[i]
		if sg.src == "" {
			if strings.ContainsAny(sg.text, "?#") {
				esc = url.QueryEscape
			}
			continue
		}
		sg.esc = esc
	}
	return &c
}

func (t *template) render(e *Env) (any, error) {
	if t.single {
		sg := &t.segs[0]
		if sg.secret != "" {
			return config.SecretRef(sg.secret), nil
		}
		v, err := t.eval(sg, e)
		if err != nil {
			return nil, err
		}
		if typed, ok := keepType(v); ok && sg.esc == nil {
			if config.ContainsSecretRef(typed) {
				return nil, forgedRef(sg)
			}
			return typed, nil
		}
		return sg.asText(v)
	}
	var b strings.Builder
	b.Grow(len(t.raw) + 16)
	for i := range t.segs {
		sg := &t.segs[i]
		switch {
		case sg.secret != "":
			b.WriteString(config.SecretRef(sg.secret))
			continue
		case sg.prog == nil:
			b.WriteString(sg.text)
			continue
		}
		v, err := t.eval(sg, e)
		if err != nil {
			return nil, err
		}
		s, err := sg.asText(v)
		if err != nil {
			return nil, err
		}
		b.WriteString(s)
	}
	return b.String(), nil
}

// asText is a segment's value as text in the rendered string: stringified, refused when it holds a
// secret reference it did not get from secret() (an alert label could otherwise make a handler
// reveal a secret), and escaped in a URL param.
func (sg *segment) asText(v any) (string, error) {
	s := stringify(v)
	if len(config.FindSecretRefs(s)) > 0 {
		return "", forgedRef(sg)
	}
	if sg.esc != nil {
		s = sg.esc(s)
	}
	return s, nil
}

func forgedRef(sg *segment) error {
	return fmt.Errorf(`{{ %s }}: the value holds a secret("...") reference; only the rule itself may reference a secret`, sg.src)
}

func (t *template) eval(sg *segment, e *Env) (any, error) {
	v, err := run(sg.prog, e)
	if err != nil {
		if me := (*MissingError)(nil); errors.As(err, &me) {
			return nil, fmt.Errorf("{{ %s }}: %w", sg.src, me)
		}
		return nil, fmt.Errorf("{{ %s }}: %w", sg.src, err)
	}
	return v, nil
}

// keepType returns v normalised to the param value types (bool, int, float64, []any,
// map[string]any) when a single-expression template yields a bool, number, list or map.
func keepType(v any) (any, bool) {
	switch x := v.(type) {
	case bool, int, int64, float64, []any, map[string]any:
		return v, true
	case string, nil, time.Time, time.Duration:
		return nil, false
	case int8, int16, int32, uint, uint8, uint16, uint32, uint64, float32:
		return v, true
	case map[string]string:
		m := make(map[string]any, len(x))
		for k, s := range x {
			m[k] = s
		}
		return m, true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Slice, reflect.Array:
		l := make([]any, rv.Len())
		for i := range l {
			l[i] = rv.Index(i).Interface()
		}
		return l, true
	case reflect.Map:
		if rv.Type().Key().Kind() != reflect.String {
			return nil, false
		}
		m := make(map[string]any, rv.Len())
		it := rv.MapRange()
		for it.Next() {
			m[it.Key().String()] = it.Value().Interface()
		}
		return m, true
	}
	return nil, false
}

// stringify formats a template value inside a string.
func stringify(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case bool:
		return strconv.FormatBool(x)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case float64:
		if math.IsInf(x, 0) || math.IsNaN(x) {
			return strconv.FormatFloat(x, 'g', -1, 64)
		}
		return strconv.FormatFloat(x, 'f', -1, 64)
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case time.Duration:
		return x.String()
	case fmt.Stringer:
		return x.String()
	}
	switch reflect.ValueOf(v).Kind() {
	case reflect.Map, reflect.Slice, reflect.Array, reflect.Struct:
		if b, err := json.Marshal(v); err == nil {
			return string(b)
		}
	}
	return fmt.Sprint(v)
}

// pnode is a compiled param value: a literal subtree without templates, a template, a list or a
// map.
type pnode struct {
	lit   any
	tmpl  *template
	list  []*pnode
	keys  []string
	vals  []*pnode
	kind  pkind
	dirty bool // the subtree holds a template
}

type pkind uint8

const (
	pLiteral pkind = iota
	pTemplate
	pList
	pMap
)

// paramError locates a render error in the params: "body", "headers.X-Reason", "args[2]".
type paramError struct {
	path string
	err  error
}

func (e *paramError) Error() string { return "param " + strconv.Quote(e.path) + ": " + e.err.Error() }
func (e *paramError) Unwrap() error { return e.err }

// prefix puts p in front of the path of err's *paramError (render's errors are one), or wraps err
// in one with path p.
func prefix(err error, p string) error {
	if pe, ok := errors.AsType[*paramError](err); ok {
		pe.path = p + pe.path
		return pe
	}
	return &paramError{path: p, err: err}
}

// render returns the node's value for e. Literal subtrees are returned as is (shared between
// renders: treat rendered params as read-only).
func (n *pnode) render(e *Env) (any, error) {
	if !n.dirty {
		return n.lit, nil
	}
	switch n.kind {
	case pTemplate:
		v, err := n.tmpl.render(e)
		if err != nil {
			return nil, &paramError{err: err}
		}
		return v, nil
	case pList:
		out := make([]any, len(n.list))
		for i, c := range n.list {
			v, err := c.render(e)
			if err != nil {
				return nil, prefix(err, "["+strconv.Itoa(i)+"]")
			}
			out[i] = v
		}
		return out, nil
	case pMap:
		out := make(map[string]any, len(n.keys))
		for i, k := range n.keys {
			v, err := n.vals[i].render(e)
			if err != nil {
				return nil, prefix(err, "."+k)
			}
			out[k] = v
		}
		return out, nil
	}
	return n.lit, nil
}

// templateError is a compile error in one {{ expr }}.
type templateError struct {
	src string
	err error
}

func (e *templateError) Error() string { return "template {{ " + e.src + " }}: " + e.err.Error() }
func (e *templateError) Unwrap() error { return e.err }

// reSecretCall is a template expression that is exactly one secret("NAME") call.
var reSecretCall = regexp.MustCompile(`^secret\(\s*(?:"([^"\\]*)"|'([^'\\]*)')\s*\)$`)

// secretCall returns the name when src is exactly secret("NAME").
func secretCall(src string) (string, bool) {
	m := reSecretCall.FindStringSubmatch(src)
	if m == nil {
		return "", false
	}
	return m[1] + m[2], true
}

// errSecretAlone refuses secret() inside a larger expression: its value never exists while rules
// are evaluated, only a reference the handler resolves, so nothing may compute with it.
var errSecretAlone = errors.New(`secret() must stand alone in its template, with a quoted name: {{ secret("NAME") }}`)

// secretSpotter records whether an expression calls secret().
type secretSpotter struct{ found bool }

func (s *secretSpotter) Visit(node *ast.Node) {
	if call, ok := (*node).(*ast.CallNode); ok {
		if id, ok := call.Callee.(*ast.IdentifierNode); ok && id.Value == "secret" {
			s.found = true
		}
	}
}

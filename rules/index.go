package rules

import (
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// The index (see Set.Candidates) keeps, for each rule whose `when` requires an alert field to
// equal one of some constants, the rule under each of those values; the other rules are residual.
// Candidates returns the residual rules and the rules filed under the alert's own values, in the
// set's order: the rules it leaves out are those whose `when` is false for the alert without an
// error, so evaluating the candidates alone gives what evaluating every rule gives.
//
// A rule is filed under one term of its `when`, read from the compiled program's AST (after
// keyPatcher and the optimizer, so the term is what runs). `when` is split into its top-level
// conjuncts (a && b && c, in evaluation order). expr's && stops at the first conjunct that is
// false or fails, so a term may be used only if it cannot fail and no conjunct before it can: its
// falseness then makes the whole `when` false, never an error. The conjuncts that cannot fail
// (safe) are comparisons of alert.name, alert.source, alert.status, alert.fingerprint,
// alert.labels.x or alert.annotations.x (in `when` a missing key reads "", see keyPatcher) with
// string constants by ==, != or in, and !, && and || of them; the terms are the == and in ones,
// and the || of terms on one field.

// field is what a term reads: a string field of AlertEnv, or one key of its labels or annotations.
type field struct {
	kind fieldKind
	key  string // the label or annotation key
}

type fieldKind uint8

// The kinds of field, in the order a rule's term is chosen when it has several: the most
// selective first. Status comes last: the engine evaluates every alert as firing.
const (
	fieldName fieldKind = iota
	fieldLabel
	fieldAnnotation
	fieldFingerprint
	fieldSource
	fieldStatus
)

var alertFields = map[string]fieldKind{"name": fieldName, "source": fieldSource, "status": fieldStatus, "fingerprint": fieldFingerprint}

// value is the field's value in e, as `when` reads it.
func (f field) value(e *Env) string {
	switch f.kind {
	case fieldName:
		return e.Alert.Name
	case fieldLabel:
		return e.Alert.Labels[f.key]
	case fieldAnnotation:
		return e.Alert.Annotations[f.key]
	case fieldFingerprint:
		return e.Alert.Fingerprint
	case fieldSource:
		return e.Alert.Source
	default:
		return e.Alert.Status
	}
}

func (f field) String() string {
	switch f.kind {
	case fieldName:
		return "alert.name"
	case fieldLabel:
		return "alert.labels." + f.key
	case fieldAnnotation:
		return "alert.annotations." + f.key
	case fieldFingerprint:
		return "alert.fingerprint"
	case fieldSource:
		return "alert.source"
	default:
		return "alert.status"
	}
}

// term says that a `when` is false unless field's value is one of values (sorted, distinct).
type term struct {
	field  field
	values []string
}

func (t term) String() string {
	return t.field.String() + " in [" + strings.Join(t.values, " ") + "]"
}

// pinOf returns the term a rule is filed under: among the terms of the conjuncts of its `when`
// up to the first one that may fail, the one on the most selective field (the first of them on
// ties). ok is false when there is none: the rule is residual.
func pinOf(r *Rule) (t term, ok bool) {
	if r.when == nil {
		return term{}, false
	}
	for _, c := range conjuncts(r.when.Node(), nil) {
		if ct, isTerm := termOf(c); isTerm && (!ok || ct.field.kind < t.field.kind) {
			t, ok = ct, true
		}
		if !safe(c) {
			break
		}
	}
	return t, ok
}

// conjuncts appends the top-level conjuncts of n to cs, in evaluation order.
func conjuncts(n ast.Node, cs []ast.Node) []ast.Node {
	if b, ok := n.(*ast.BinaryNode); ok && (b.Operator == "&&" || b.Operator == "and") {
		return conjuncts(b.Right, conjuncts(b.Left, cs))
	}
	return append(cs, n)
}

// termOf returns the term n is, if it is one: field == "c", "c" == field, field in ["c", ...], or
// an || of terms on one field.
func termOf(n ast.Node) (term, bool) {
	b, ok := n.(*ast.BinaryNode)
	if !ok {
		return term{}, false
	}
	switch b.Operator {
	case "==":
		if f, ok := fieldOf(b.Left); ok {
			if s, ok := b.Right.(*ast.StringNode); ok {
				return term{f, []string{s.Value}}, true
			}
		}
		if f, ok := fieldOf(b.Right); ok {
			if s, ok := b.Left.(*ast.StringNode); ok {
				return term{f, []string{s.Value}}, true
			}
		}
	case "in":
		f, ok := fieldOf(b.Left)
		if !ok {
			return term{}, false
		}
		if vs, ok := stringSet(b.Right); ok {
			return term{f, vs}, true
		}
	case "||", "or":
		l, ok := termOf(b.Left)
		if !ok {
			return term{}, false
		}
		r, ok := termOf(b.Right)
		if !ok || l.field != r.field {
			return term{}, false
		}
		vs := slices.Concat(l.values, r.values)
		slices.Sort(vs)
		return term{l.field, slices.Compact(vs)}, true
	}
	return term{}, false
}

// stringSet returns the strings of a constant list of strings: an array literal, or the set the
// optimizer turns one into.
func stringSet(n ast.Node) ([]string, bool) {
	var vs []string
	switch c := n.(type) {
	case *ast.ArrayNode:
		for _, e := range c.Nodes {
			s, ok := e.(*ast.StringNode)
			if !ok {
				return nil, false
			}
			vs = append(vs, s.Value)
		}
	case *ast.ConstantNode:
		m, ok := c.Value.(map[string]struct{})
		if !ok {
			return nil, false
		}
		for s := range m {
			vs = append(vs, s)
		}
	default:
		return nil, false
	}
	slices.Sort(vs)
	return slices.Compact(vs), true
}

// fieldOf returns the field n reads, if n is alert.<string field>, or @get(alert.labels, "k") or
// @get(alert.annotations, "k") (what keyPatcher makes of alert.labels.k in `when`: "" when
// missing, never an error).
func fieldOf(n ast.Node) (field, bool) {
	switch n := n.(type) {
	case *ast.MemberNode:
		p, ok := n.Property.(*ast.StringNode)
		if !ok || !isAlert(n.Node) {
			return field{}, false
		}
		k, ok := alertFields[p.Value]
		return field{kind: k}, ok && n.Type() == stringType
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok || id.Value != fnGet || len(n.Arguments) != 2 {
			return field{}, false
		}
		m, ok := n.Arguments[0].(*ast.MemberNode)
		if !ok || m.Optional || !isAlert(m.Node) {
			return field{}, false
		}
		p, ok := m.Property.(*ast.StringNode)
		key, isKey := n.Arguments[1].(*ast.StringNode)
		if !ok || !isKey || m.Type() != mapStrStr {
			return field{}, false
		}
		switch p.Value {
		case "labels":
			return field{kind: fieldLabel, key: key.Value}, true
		case "annotations":
			return field{kind: fieldAnnotation, key: key.Value}, true
		}
	}
	return field{}, false
}

var stringType = reflect.TypeOf("")

// isAlert reports whether n is the environment's alert variable.
func isAlert(n ast.Node) bool {
	id, ok := n.(*ast.IdentifierNode)
	return ok && id.Value == "alert" && id.Type() == alertEnvType
}

// safe reports whether evaluating n can neither fail nor call anything: a term, field != "c", a
// bool literal, or !, && and || of safe nodes.
func safe(n ast.Node) bool {
	if _, ok := termOf(n); ok {
		return true
	}
	switch n := n.(type) {
	case *ast.BoolNode:
		return true
	case *ast.UnaryNode:
		return (n.Operator == "!" || n.Operator == "not") && safe(n.Node)
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and", "||", "or":
			return safe(n.Left) && safe(n.Right)
		case "!=":
			_, l := fieldOf(n.Left)
			_, r := fieldOf(n.Right)
			_, ls := n.Left.(*ast.StringNode)
			_, rs := n.Right.(*ast.StringNode)
			return l && rs || ls && r
		}
	}
	return false
}

// index is a Set's rules filed by their terms.
type index struct {
	// fields are the fields some rule is filed under, each with its rules by value (positions in
	// Set.Rules, ascending).
	fields []fieldIndex
	// residual are the positions of the rules filed under no term, ascending.
	residual []int32
	// forRules are the names of the rules with a `for`, in order.
	forRules []string
}

type fieldIndex struct {
	field   field
	byValue map[string][]int32
}

func newIndex(rs []*Rule) *index {
	x := &index{}
	for i, r := range rs {
		if r.For > 0 {
			x.forRules = append(x.forRules, r.Name)
		}
		t, ok := pinOf(r)
		if !ok {
			x.residual = append(x.residual, int32(i))
			continue
		}
		j := slices.IndexFunc(x.fields, func(f fieldIndex) bool { return f.field == t.field })
		if j < 0 {
			j = len(x.fields)
			x.fields = append(x.fields, fieldIndex{field: t.field, byValue: map[string][]int32{}})
		}
		for _, v := range t.values {
			x.fields[j].byValue[v] = append(x.fields[j].byValue[v], int32(i))
		}
	}
	return x
}

// index returns s's index, building it on first use.
func (s *Set) index() *index {
	s.indexOnce.Do(func() { s.idx = newIndex(s.Rules) })
	return s.idx
}

// Candidates appends to buf the rules of s that may match the alert of e, in the set's order, and
// returns it: every rule but those whose `when` is false for it without an error (see the
// package doc). Evaluating the candidates alone gives the same matches and the same errors as
// evaluating every rule. Rules must not change once Candidates or ForRules has been called.
func (s *Set) Candidates(e *Env, buf []*Rule) []*Rule {
	x := s.index()
	// The residual list and the lists of the alert's values of each field, each ascending and
	// disjoint (a rule is filed under one field): merged.
	var lists [8][]int32
	ls := append(lists[:0], x.residual)
	for _, f := range x.fields {
		if l := f.byValue[f.field.value(e)]; len(l) > 0 {
			ls = append(ls, l)
		}
	}
	for {
		lo := -1
		for i, l := range ls {
			if len(l) > 0 && (lo < 0 || l[0] < ls[lo][0]) {
				lo = i
			}
		}
		if lo < 0 {
			return buf
		}
		buf = append(buf, s.Rules[ls[lo][0]])
		ls[lo] = ls[lo][1:]
	}
}

// ForRules returns the names of the rules of s that have a `for`, in order. The slice is shared:
// do not modify it.
func (s *Set) ForRules() []string {
	return s.index().forRules
}

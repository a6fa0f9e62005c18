package vocab

import (
	"go/ast"
	"go/parser"
	"go/token"
	"regexp"
	"slices"
	"strconv"
	"testing"
)

// TestLists: each list holds distinct values, spelled as the contract spells them (lowercase
// snake_case words: they are JSON values, metric labels and SQL literals).
func TestLists(t *testing.T) {
	word := regexp.MustCompile(`^[a-z]+(_[a-z]+)*$`)
	check := func(name string, vs []string) {
		t.Helper()
		seen := map[string]bool{}
		for _, v := range vs {
			if !word.MatchString(v) {
				t.Errorf("%s: %q is not a snake_case word", name, v)
			}
			if seen[v] {
				t.Errorf("%s: %q twice", name, v)
			}
			seen[v] = true
		}
	}
	check("States", strs(States))
	check("IncidentStates", strs(IncidentStates))
	check("Reasons", strs(Reasons))
	check("Phases", strs(Phases))
	check("Modes", strs(Modes))
	check("Classes", strs(Classes))
}

func TestFinal(t *testing.T) {
	want := []State{StateDenied, StateExpired, StateSucceeded, StateFailed, StateUnknown, StateSkipped, StateDryRun}
	if !slices.Equal(Outcomes, want) {
		t.Errorf("Outcomes = %v, want %v", Outcomes, want)
	}
	for _, s := range append(slices.Clone(Waiting), StateRunning, StateVerifying) {
		if s.Final() {
			t.Errorf("%s is not final", s)
		}
	}
	if slices.Contains(Claimable, StateVerifying) || slices.Contains(Waiting, StateVerifying) {
		t.Error("verifying is neither claimable nor waiting: nothing cancels or re-runs it")
	}
	for _, s := range Claimable {
		if !slices.Contains(Waiting, s) {
			t.Errorf("claimable %s is not waiting", s)
		}
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// TestEveryConstantListed: each constant declared in this package is in its type's list, so a
// new one cannot be left out of the metrics, the store's checks and the tests that read the lists.
func TestEveryConstantListed(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "vocab.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string][]string{
		"State": strs(States), "IncidentState": strs(IncidentStates), "Reason": strs(Reasons),
		"Phase": strs(Phases), "Mode": strs(Modes), "Class": strs(Classes),
	}
	n := 0
	for _, d := range f.Decls {
		g, ok := d.(*ast.GenDecl)
		if !ok || g.Tok != token.CONST {
			continue
		}
		for _, s := range g.Specs {
			vs := s.(*ast.ValueSpec)
			typ, ok := vs.Type.(*ast.Ident)
			if !ok {
				t.Fatalf("constant %s has no explicit type", vs.Names[0])
			}
			for _, v := range vs.Values {
				lit := v.(*ast.BasicLit)
				val, _ := strconv.Unquote(lit.Value)
				if !slices.Contains(listed[typ.Name], val) {
					t.Errorf("%s %q is not in its list", typ.Name, val)
				}
				n++
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d constants found: the parse is wrong", n)
	}
}

package ruletest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	gocmp "github.com/google/go-cmp/cmp"
)

// normalize gives params one representation whether they come from YAML or from the store: a JSON
// round trip (numbers become float64, nested maps map[string]any).
func normalize(p map[string]any) map[string]any {
	if p == nil {
		return nil
	}
	b, err := json.Marshal(p)
	if err != nil {
		return p
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		return p
	}
	return out
}

// matches reports whether a planned action satisfies an expected one: same rule, handler and
// phase, the same approval and verify outcome when the expectation names them, equal values for
// the params it lists, and no failure (but the not_recovered of a verify it expects).
func matches(exp, got Action) bool {
	failed := got.Failed != "" && (exp.Verify != VerifyNotRecovered || got.Verify != VerifyNotRecovered)
	if exp.Rule != got.Rule || exp.Handler != got.Handler || exp.Phase != got.Phase || failed {
		return false
	}
	if exp.Verify != "" && exp.Verify != got.Verify {
		return false
	}
	if exp.Approval != "" && exp.Approval != got.Approval {
		return false
	}
	for k, v := range exp.Params {
		g, ok := got.Params[k]
		if !ok || !gocmp.Equal(v, g) {
			return false
		}
	}
	return true
}

// pair matches expected to got actions one to one (a maximum bipartite matching, so the order of
// either list never matters). It returns, for each expected action, the index of its got action or
// -1.
func pair(exp, got []Action) []int {
	owner := make([]int, len(got)) // got index → expected index
	for i := range owner {
		owner[i] = -1
	}
	var try func(e int, seen []bool) bool
	try = func(e int, seen []bool) bool {
		for g := range got {
			if seen[g] || !matches(exp[e], got[g]) {
				continue
			}
			seen[g] = true
			if owner[g] < 0 || try(owner[g], seen) {
				owner[g] = e
				return true
			}
		}
		return false
	}
	for e := range exp {
		try(e, make([]bool, len(got)))
	}
	out := make([]int, len(exp))
	for i := range out {
		out[i] = -1
	}
	for g, e := range owner {
		if e >= 0 {
			out[e] = g
		}
	}
	return out
}

// compare returns "" when got satisfies exp, else a readable diff (-expected +got). In the diff,
// a got action shows only the params its closest expectation lists (all of them when none is
// close), and the approval only when the expectation names one.
func compare(exp, got []Action) string {
	p := pair(exp, got)
	used := make([]bool, len(got))
	ok := true
	for _, g := range p {
		if g < 0 {
			ok = false
			continue
		}
		used[g] = true
	}
	if ok && !slices.Contains(used, false) {
		return ""
	}
	// Display: each expectation next to its match, or to the first unused action of the same
	// rule, handler and phase; then the remaining actions in full.
	var want, have []Action
	shown := slices.Clone(used)
	for e, g := range p {
		if g < 0 {
			g = closest(exp[e], got, shown)
			if g >= 0 {
				shown[g] = true
			}
		}
		want = append(want, exp[e])
		if g >= 0 {
			have = append(have, project(exp[e], got[g]))
		}
	}
	for g := range got {
		if !shown[g] {
			have = append(have, got[g])
		}
	}
	sortActions(want)
	sortActions(have)
	if want == nil {
		want = []Action{}
	}
	if have == nil {
		have = []Action{}
	}
	return gocmp.Diff(want, have)
}

// closest is the first unshown action with the expectation's rule, handler and phase (-1: none).
func closest(exp Action, got []Action, shown []bool) int {
	for g, a := range got {
		if !shown[g] && a.Rule == exp.Rule && a.Handler == exp.Handler && a.Phase == exp.Phase {
			return g
		}
	}
	return -1
}

// project trims a got action to what exp compares.
func project(exp, got Action) Action {
	out := got
	out.Params = map[string]any{}
	for k := range exp.Params {
		if v, ok := got.Params[k]; ok {
			out.Params[k] = v
		}
	}
	if exp.Approval == "" {
		out.Approval = ""
	}
	if exp.Verify == "" && out.Failed == "" {
		out.Verify = ""
	}
	if exp.Verify == VerifyNotRecovered && out.Verify == VerifyNotRecovered {
		out.Failed = ""
	}
	return out
}

func sortActions(as []Action) {
	slices.SortStableFunc(as, func(a, b Action) int {
		return cmp.Or(cmp.Compare(a.Rule, b.Rule), cmp.Compare(phaseOrder(a.Phase), phaseOrder(b.Phase)),
			cmp.Compare(a.Handler, b.Handler), cmp.Compare(fmt.Sprint(sortedParams(a.Params)), fmt.Sprint(sortedParams(b.Params))))
	})
}

func phaseOrder(p string) int { return slices.Index(phases, p) }

func sortedParams(p map[string]any) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(p)) {
		out = append(out, fmt.Sprintf("%s=%v", k, p[k]))
	}
	return out
}

package vocab

import (
	"regexp"
	"slices"
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
	for _, s := range append(slices.Clone(Waiting), StateRunning) {
		if s.Final() {
			t.Errorf("%s is not final", s)
		}
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

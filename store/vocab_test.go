package store_test

import (
	"regexp"
	"slices"
	"testing"

	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/store/pgtest"
	"github.com/responder-sre/responder/vocab"
)

// TestChecksMatchVocab: every column holding one of vocab's lists is checked by the database
// against exactly that list, so a value added to vocab without a migration (or the reverse)
// fails here rather than at the first insert in production.
func TestChecksMatchVocab(t *testing.T) {
	ctx := t.Context()
	s, err := store.Open(ctx, pgtest.NewDatabase(t), store.Options{Version: "v-test"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		constraint string
		want       []string
	}{
		{"actions_state_check", strs(vocab.States)},
		{"actions_phase_check", strs(vocab.Phases)},
		{"actions_class_check", append(strs(vocab.Classes), "")}, // "": never built (bad_param)
		{"actions_mode_check", strs(vocab.Modes)},
		{"incidents_state_check", strs(vocab.IncidentStates)},
		{"drill_runs_trigger_check", store.DrillTriggers},
	} {
		var def string
		if err := s.Pool().QueryRow(ctx, `SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = $1`, tc.constraint).Scan(&def); err != nil {
			t.Fatalf("%s: %v", tc.constraint, err)
		}
		var got []string
		for _, m := range regexp.MustCompile(`'([a-z_]*)'`).FindAllStringSubmatch(def, -1) {
			got = append(got, m[1])
		}
		slices.Sort(got)
		want := slices.Sorted(slices.Values(tc.want))
		if !slices.Equal(got, want) {
			t.Errorf("%s allows %v; vocab lists %v", tc.constraint, got, want)
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

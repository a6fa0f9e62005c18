package store_test

import (
	"context"
	"testing"
)

func TestAcceptFence(t *testing.T) {
	s := openLeaseStore(t)
	ctx := context.Background()
	steps := []struct {
		name  string
		token int64
		want  bool
	}{
		{"probes", 5, true},  // the first leader
		{"probes", 5, true},  // its backlog
		{"probes", 6, true},  // its successor
		{"probes", 5, false}, // the deposed leader, late
		{"probes", 6, true},
		{"other", 1, true}, // another source has its own tokens
		{"probes", 7, true},
	}
	for i, st := range steps {
		got, err := s.AcceptFence(ctx, st.name, st.token)
		if err != nil {
			t.Fatal(err)
		}
		if got != st.want {
			t.Fatalf("step %d: AcceptFence(%s, %d) = %v, want %v", i, st.name, st.token, got, st.want)
		}
	}
}

package leader

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// TestRunWhileLeading: work runs on the leader with its token, is cancelled when leadership ends,
// and runs on the successor with the next token.
func TestRunWhileLeading(t *testing.T) {
	st := openStore(t)
	c := &clock{t: t0}
	ms := map[string]member{
		"a": newMember(t, st, "a", c.Now, 5*time.Millisecond),
		"b": newMember(t, st, "b", c.Now, 5*time.Millisecond),
	}
	type run struct {
		holder string
		token  int64
	}
	var mu sync.Mutex
	var started, ended []run
	stops := map[string]func(){}
	for name, m := range ms {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); _ = m.e.Run(ctx) }()
		go func() {
			defer wg.Done()
			m.e.RunWhileLeading(ctx, 2*time.Millisecond, func(ctx context.Context, token int64) error {
				mu.Lock()
				started = append(started, run{name, token})
				mu.Unlock()
				<-ctx.Done()
				mu.Lock()
				ended = append(ended, run{name, token})
				mu.Unlock()
				return nil
			}, nil)
		}()
		stops[name] = func() { cancel(); wg.Wait() }
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	// terms is the condition "n works started", saying which started and ended so far.
	terms := func(n int) func() (bool, string) {
		return func() (bool, string) {
			mu.Lock()
			defer mu.Unlock()
			return len(started) == n, fmt.Sprintf("started %v, ended %v", started, ended)
		}
	}
	testwait.UntilDetail(t, 10*time.Second, "the first term", terms(1))
	first := started[0]
	if first.token != 1 {
		t.Fatalf("first work runs under token %d, want 1", first.token)
	}
	stops[first.holder]()
	delete(stops, first.holder)
	testwait.UntilDetail(t, 10*time.Second, "the second term", terms(2))
	mu.Lock()
	second := started[1]
	endedFirst := len(ended) == 1 && ended[0] == first
	mu.Unlock()
	if !endedFirst {
		t.Fatalf("the first work did not end with its leadership: ended %v", ended)
	}
	if second.holder == first.holder || second.token != 2 {
		t.Fatalf("second work %+v, want the other member under token 2", second)
	}
}

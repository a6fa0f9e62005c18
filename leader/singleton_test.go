package leader

import (
	"context"
	"sync"
	"testing"
	"time"
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
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			mu.Lock()
			ok := cond()
			mu.Unlock()
			if ok {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (started %v, ended %v)", what, started, ended)
			}
			<-time.After(time.Millisecond) // polling, within the deadline above
		}
	}
	waitFor("the first term", func() bool { return len(started) == 1 })
	first := started[0]
	if first.token != 1 {
		t.Fatalf("first work runs under token %d, want 1", first.token)
	}
	stops[first.holder]()
	delete(stops, first.holder)
	waitFor("the second term", func() bool { return len(started) == 2 })
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

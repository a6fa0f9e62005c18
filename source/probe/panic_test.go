package probe

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/internal/testwait"
)

// A panic in one run of a probe fails that run: the loop goes on, the probe runs again and its
// alert is published at a later run.
func TestPanickingRunFailsOnlyThatRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	cfgs := parseProbes(t, fmt.Sprintf("  - {name: api, interval: 100ms, tcp: {address: %q}, firing_when: value >= 0}\n", ln.Addr()))
	rec := &recorder{}
	var calls, panics atomic.Int32
	publish := func(ctx context.Context, as []alert.Alert) error {
		if calls.Add(1) == 1 {
			panic("publish bug")
		}
		return rec.publish(ctx, as)
	}
	r := newRunner(t, cfgs, Options{Publish: publish, OnPanic: func() { panics.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	testwait.UntilDetail(t, 10*time.Second, "an alert after the panicking run", func() (bool, string) {
		return len(rec.all()) >= 1, fmt.Sprintf("%d publish calls, %d alerts", calls.Load(), len(rec.all()))
	})
	if n := panics.Load(); n != 1 {
		t.Errorf("OnPanic called %d times, want 1", n)
	}
}

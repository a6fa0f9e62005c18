package probe

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/internal/testwait"
)

// TestRun: the loop runs every probe on its interval, continues the episode a previous leader
// saved, publishes heartbeats (not one alert per run) and returns nil when its context ends.
func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var runs atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			runs.Add(1)
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	// firing_when holds for every latency: every run fails.
	cfgs := parseProbes(t, fmt.Sprintf("  - {name: api, interval: 100ms, tcp: {address: %q}, firing_when: value >= 0}\n", addr))

	// A previous leader saved a firing episode for this probe.
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Microsecond)
	prev, err := json.Marshal(State{Firing: true, EpisodeStart: start, LastEmitted: time.Now(),
		Labels: map[string]string{alert.NameLabel: "api", LabelKind: "tcp", LabelInstance: addr}})
	if err != nil {
		t.Fatal(err)
	}
	saved := &memStore{m: map[string][]byte{"api": prev}}

	rec := &recorder{}
	r := newRunner(t, cfgs, Options{Publish: rec.publish, State: saved, Heartbeat: 300 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	testwait.UntilDetail(t, 10*time.Second, "heartbeats", func() (bool, string) {
		return len(rec.all()) >= 2 && runs.Load() >= 6, fmt.Sprintf("%d runs, %d alerts", runs.Load(), len(rec.all()))
	})
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v, want nil after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	all := rec.all()
	if n := int64(len(all)); n >= runs.Load() {
		t.Errorf("%d alerts for %d runs: want heartbeats only", n, runs.Load())
	}
	for _, a := range all {
		if a.Status != alert.StatusFiring || !a.StartsAt.Equal(start) {
			t.Errorf("alert %s from %s; want heartbeats of the saved episode from %s", a.Status, a.StartsAt, start)
		}
	}
	if got := testutil.ToFloat64(r.m.success.WithLabelValues("api", "tcp")); got != 0 {
		t.Errorf("responder_probe_success = %v, want 0", got)
	}

	// Leadership regained after another leader moved the episode on: Run reloads the state.
	later := start.Add(30 * time.Minute)
	next, _ := json.Marshal(State{Firing: true, EpisodeStart: later,
		Labels: map[string]string{alert.NameLabel: "api", LabelKind: "tcp", LabelInstance: addr}})
	saved.m["api"] = next
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	go func() { done <- r.Run(ctx) }()
	testwait.UntilDetail(t, 10*time.Second, "a heartbeat of the reloaded episode", func() (bool, string) {
		all := rec.all()
		return all[len(all)-1].StartsAt.Equal(later), fmt.Sprintf("last startsAt %s", all[len(all)-1].StartsAt)
	})
	cancel()
	if err := <-done; err != nil {
		t.Errorf("second Run = %v", err)
	}
}

// FuzzRedisReply: the RESP reply reader never panics, never returns a reason with control
// characters or invalid UTF-8, and accepts exactly the wanted simple string.
func FuzzRedisReply(f *testing.F) {
	for _, s := range []string{"+PONG\r\n", "+OK\r\n", "-NOAUTH Authentication required.\r\n",
		"-WRONGPASS invalid username-password pair\r\n", "$4\r\nPONG\r\n", ":1\r\n", "+PONG", "\xff\x00\r\n",
		strings.Repeat("x", 600) + "\r\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		err := expectReply(bufio.NewReaderSize(strings.NewReader(string(b)), 512), "PONG")
		if err == nil {
			if !strings.HasPrefix(string(b), "+PONG\n") && !strings.HasPrefix(string(b), "+PONG\r") {
				t.Fatalf("accepted %q", b)
			}
			return
		}
		msg := err.Error()
		if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\r\n\x00") {
			t.Fatalf("unsafe reason %q", msg)
		}
	})
}

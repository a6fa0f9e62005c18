package bus_test

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
)

// syncBuffer is a log sink safe for the client's callback goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A nats.url with credentials (user and password, or a token) never reaches a log line or an error.
func TestNATSCredentialsNeverLogged(t *testing.T) {
	srv := bustest.Start(t) // no authorization: it accepts any credentials
	port := strings.TrimPrefix(srv.URL(), "nats://127.0.0.1:")
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	b, _ := open(t, bus.Options{URL: "nats://XXXXTOKEN@127.0.0.1:" + port + ",nats://user:XXXXPASS@127.0.0.1:" + port, Logger: log})
	srv.Shutdown()
	srv.Restart()
	testwait.Until(t, settle, "reconnected", func() bool { return strings.Contains(logs.String(), "bus reconnected") })
	if got := bus.RedactURL(b.ClientURL()); strings.Contains(got, "XXXX") || !strings.Contains(got, "127.0.0.1:"+port) {
		t.Errorf("RedactURL(%q) = %q", b.ClientURL(), got)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = bus.Open(ctx, bus.Options{URL: "nats://user:XXXXPASS@" + closed, SigningKey: testKey, Logger: log, Registerer: prometheus.NewRegistry()})
	if err == nil {
		t.Fatal("Open of a closed port succeeded")
	}
	for _, s := range []string{err.Error(), logs.String()} {
		if strings.Contains(s, "XXXX") {
			t.Errorf("%q holds the credentials", s)
		}
	}
	if !strings.Contains(err.Error(), closed) {
		t.Errorf("error %q does not say where it tried", err)
	}
}

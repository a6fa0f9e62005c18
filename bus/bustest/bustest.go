// Package bustest runs a real in-process NATS JetStream server for tests: loopback, a random port,
// file storage in a temporary directory, torn down by t.Cleanup. Shutdown and Restart (same port,
// same store) let tests take the bus down and bring it back.
package bustest

import (
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Server is a running (or stopped) JetStream server.
type Server struct {
	t    testing.TB
	mu   sync.Mutex
	opts server.Options
	srv  *server.Server
}

// Option changes the server's options before it starts.
type Option func(*server.Options)

// MaxPayload sets the server's maximum message payload (default 8 MiB, the embedded server's):
// tests of oversized groups and alerts use a small one.
func MaxPayload(n int32) Option {
	return func(o *server.Options) { o.MaxPayload = n }
}

// Start starts a JetStream server and registers its shutdown with t.Cleanup.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	s := &Server{t: t, opts: server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoLog:      true,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   t.TempDir(),
		SyncAlways: true,
		MaxPayload: 8 << 20,
	}}
	for _, o := range opts {
		o(&s.opts)
	}
	if err := s.start(); err != nil {
		t.Fatal(err)
	}
	// Keep the port so Restart comes back where clients reconnect.
	s.opts.Port = s.srv.Addr().(*net.TCPAddr).Port
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() error {
	opts := s.opts
	srv, err := server.NewServer(&opts)
	if err != nil {
		return fmt.Errorf("bustest: new server: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return fmt.Errorf("bustest: server not ready")
	}
	s.srv = srv
	return nil
}

// URL is the client URL (nats://127.0.0.1:port); it stays the same across Restart.
func (s *Server) URL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", s.opts.Port)
}

// StoreDir is the JetStream storage directory.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Shutdown stops the server (a no-op when it is stopped).
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart stops the server if it runs and starts it again on the same port with the same store.
func (s *Server) Restart() {
	s.t.Helper()
	s.Shutdown()
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.start(); err != nil {
		s.t.Fatalf("bustest: restart: %v", err)
	}
}

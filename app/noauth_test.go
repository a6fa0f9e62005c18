package app_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/app"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// --web.no-auth refuses a listen address other hosts can reach unless
// --web.no-auth.unsafe-any-address; the refusal comes before anything starts (the database here
// cannot be reached).
func TestNoAuthRefusesNonLoopbackAddresses(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "responder.yml")
	must(t, os.WriteFile(cfg, []byte("database: {url: \"postgres://127.0.0.1:1/none?connect_timeout=1\"}\n"), 0o600))
	for _, addr := range []string{"0.0.0.0:0", ":0", "[::]:0", "10.1.2.3:9095", "responder.example.com:9095"} {
		_, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: addr, StoragePath: dir, NoAuth: true})
		if err == nil || !strings.Contains(err.Error(), "--web.no-auth.unsafe-any-address") {
			t.Errorf("--web.listen-address=%s: err = %v, want a refusal naming --web.no-auth.unsafe-any-address", addr, err)
		}
		// With the unsafe flag, or on a loopback address, the start goes on (to the database).
		_, err = app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: addr, StoragePath: dir, NoAuth: true, NoAuthUnsafeAnyAddress: true})
		if err == nil || strings.Contains(err.Error(), "--web.no-auth") {
			t.Errorf("--web.listen-address=%s with the unsafe flag: err = %v, want the database's error", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "127.0.0.2:9095", "[::1]:0", "localhost:0", "LOCALHOST:9095"} {
		_, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: addr, StoragePath: dir, NoAuth: true})
		if err == nil || strings.Contains(err.Error(), "--web.no-auth") {
			t.Errorf("--web.listen-address=%s: err = %v, want the database's error (loopback is fine)", addr, err)
		}
	}
}

// A replica serving with --web.no-auth says so at start and then every NoAuthWarnInterval.
func TestNoAuthWarnsPeriodically(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "responder.yml")
	must(t, os.WriteFile(cfg, []byte(fmt.Sprintf("database: {url: %q}\n", pgtest.NewDatabase(t))), 0o600))
	logs := &lockedBuffer{}
	a, err := app.New(context.Background(), app.Options{ConfigFile: cfg, ListenAddress: "localhost:0", StoragePath: filepath.Join(dir, "data"),
		NoAuth: true, NoAuthWarnInterval: 100 * time.Millisecond, Version: "test", DrainTimeout: 5 * time.Second,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	warnings := func() int { return strings.Count(logs.String(), "serving WITHOUT authentication") }
	testwait.Until(t, 10*time.Second, "the first warning", func() bool { return warnings() >= 1 })
	start := time.Now()
	testwait.Until(t, 10*time.Second, "three more warnings", func() bool { return warnings() >= 4 })
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("three warnings in %s, want one per 100ms interval", d)
	}
}

package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/bustest"
)

// createStream makes the stream responder uses, as someone else configured it, before Open.
func createStream(t *testing.T, url string, cfg jetstream.StreamConfig) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Name, cfg.Subjects = bus.DefaultStream, []string{bus.DefaultSubject}
	if _, err := js.CreateStream(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return js
}

func openErr(o bus.Options) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := bus.Open(ctx, o)
	if err == nil {
		_ = b.Close(ctx)
	}
	return err
}

// A stream in memory cannot be turned into the file storage responder asks for: Open refuses to
// run, naming both values, instead of holding alerts that a server restart loses.
func TestOpenRefusesStreamStorageMismatch(t *testing.T) {
	srv := bustest.Start(t)
	createStream(t, srv.URL(), jetstream.StreamConfig{Storage: jetstream.MemoryStorage})
	err := openErr(bus.Options{URL: srv.URL(), Replicas: 1, SigningKey: streamTestKey})
	if !errors.Is(err, bus.ErrStreamConfig) {
		t.Fatalf("Open on a memory stream: %v; want ErrStreamConfig", err)
	}
	for _, want := range []string{bus.DefaultStream, "storage memory on the server", "responder asks for file"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	t.Log(err)
}

// What JetStream can change in place is changed: the limits of a stream made by an older version.
func TestOpenUpdatesStreamInPlace(t *testing.T) {
	srv := bustest.Start(t)
	js := createStream(t, srv.URL(), jetstream.StreamConfig{Storage: jetstream.FileStorage, MaxBytes: 1 << 20, Replicas: 1})
	b, _ := open(t, bus.Options{URL: srv.URL(), Replicas: 1, MaxBytes: 8 << 20, SigningKey: streamTestKey})
	if err := b.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(t.Context(), bus.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.CachedInfo().Config; got.MaxBytes != 8<<20 || got.Replicas != 1 || got.Storage != jetstream.FileStorage {
		t.Errorf("stream after Open: max_bytes %d, replicas %d, storage %s; want 8MiB, 1, file", got.MaxBytes, got.Replicas, got.Storage)
	}
}

// A single server cannot hold 3 replicas (the external default): Open fails saying what it asked.
func TestOpenReplicasOnSingleServer(t *testing.T) {
	srv := bustest.Start(t)
	err := openErr(bus.Options{URL: srv.URL(), Replicas: 3, SigningKey: streamTestKey})
	if err == nil || !strings.Contains(err.Error(), "3 replicas") {
		t.Fatalf("Open with 3 replicas on one server: %v; want a refusal naming 3 replicas", err)
	}
	t.Log(err)
}

// streamTestKey is the signing key an external bus needs.
var streamTestKey = []byte("0123456789abcdef0123456789abcdef-stream-test")

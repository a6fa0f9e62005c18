package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"

	"github.com/nats-io/nats-server/v2/server"
)

// embedded is the in-process JetStream server. It can be restarted in place (same port, same store
// directory) to recover from a file-store write error; see storage.go for why and when.
type embedded struct {
	o    Options
	mu   sync.Mutex
	srv  *server.Server // nil between a failed restart and the next
	port int            // fixed after the first start, so the client reconnects to the new server
}

// startEmbedded runs an in-process JetStream server on loopback with file storage under
// o.StoreDir and an fsync after every write.
func startEmbedded(o Options) (*embedded, error) {
	e := &embedded{o: o, port: o.Port}
	if e.port == 0 {
		e.port = server.RANDOM_PORT
	}
	srv, err := e.newServer()
	if err != nil {
		return nil, err
	}
	e.srv = srv
	e.port = srv.Addr().(*net.TCPAddr).Port
	return e, nil
}

func (e *embedded) newServer() (*server.Server, error) {
	srv, err := server.NewServer(&server.Options{
		ServerName: "responder",
		Host:       "127.0.0.1",
		Port:       e.port,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   e.o.StoreDir,
		SyncAlways: true,
		MaxPayload: embeddedMaxPayload,
		// The HTTP monitor, cluster and leaf ports stay closed.
	})
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{e.o.Logger.With("component", "nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(embeddedReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("bus: embedded server not ready after %s", embeddedReadyTimeout)
	}
	return srv, nil
}

func (e *embedded) server() *server.Server {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.srv
}

func (e *embedded) clientURL() string {
	return fmt.Sprintf("nats://127.0.0.1:%d", e.port)
}

// restart shuts the server down and starts a new one on the same port over the same store. The
// client connection reconnects by itself (MaxReconnects -1); the stream, the durable consumer and
// its ack state are recovered from the store directory, exactly as after a process restart.
func (e *embedded) restart() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
	srv, err := e.newServer()
	if err != nil {
		return err
	}
	e.srv = srv
	return nil
}

func (e *embedded) shutdown() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.stopLocked()
}

func (e *embedded) stopLocked() {
	if e.srv != nil {
		e.srv.Shutdown()
		e.srv.WaitForShutdown()
		e.srv = nil
	}
}

// storeError reports whether the server can no longer store messages of stream: JetStream was
// disabled, or the stream met a write error (its file store keeps that error, and refuses every
// later write, until the store is opened again). nil while the stream does not exist yet.
func (e *embedded) storeError(stream string) error {
	srv := e.server()
	if srv == nil {
		return &StorageError{Dir: e.o.StoreDir, Err: errors.New("the embedded JetStream server is not running")}
	}
	h := srv.Healthz(&server.HealthzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Stream: stream})
	switch h.StatusCode {
	case http.StatusOK, http.StatusNotFound:
		return nil
	}
	return &StorageError{Dir: e.o.StoreDir, Err: errors.New(h.Error)}
}

// serverLogger adapts slog to nats-server's Logger.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

package bus

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// errWedged: the embedded server did not answer its own health check within healthzTimeout. Seen
// with nats-server v2.15.2 and v2.15.3 when the disk fills during a purge: fileStore.compactLocked
// holds the store's lock and, when flushing its tombstones fails, flushPendingMsgs calls
// rebuildState, which takes the same lock again. That stream never answers again (publishes,
// fetches, health checks, shutdown), so the server cannot be restarted in place: only a new
// process can recover, which Live asks for after embeddedDownLive.
var errWedged = errors.New("the embedded JetStream server does not answer its health check (its store is wedged; the process must be restarted)")

// healthzTimeout bounds one health check of the embedded server. It answers in microseconds;
// only a wedged store takes longer.
const healthzTimeout = 5 * time.Second

// healthCall is one health check in flight; done is closed when h is set.
type healthCall struct {
	done chan struct{}
	h    *server.HealthStatus
}

// embedded is the in-process JetStream server. It can be restarted in place (same port, same store
// directory) to recover from a file-store write error; see storage.go for why and when.
type embedded struct {
	o    Options
	mu   sync.Mutex
	srv  *server.Server // nil between a failed restart and the next
	port int            // fixed after the first start, so the client reconnects to the new server
	// token is what the server requires of its clients: random, generated at each start of the
	// process (kept across restarts in place, so the client reconnects).
	token string

	// healthz is srv.Healthz (a test hook). At most one call runs at a time: a wedged server
	// would otherwise collect one stuck goroutine per check.
	healthz     func(*server.Server, *server.HealthzOptions) *server.HealthStatus
	hmu         sync.Mutex
	pending     *healthCall
	wedgedSince atomic.Int64 // unix ns since which the health check has not answered; 0 otherwise
	// timeout (healthzTimeout) and downLive (embeddedDownLive), in ns; tests shorten them.
	timeout, downLive atomic.Int64
}

// startEmbedded runs an in-process JetStream server on loopback with file storage under
// o.StoreDir and an fsync after every write.
func startEmbedded(o Options) (*embedded, error) {
	token, err := randomSecret(32)
	if err != nil {
		return nil, err
	}
	e := &embedded{o: o, port: o.Port, token: token, healthz: (*server.Server).Healthz}
	e.timeout.Store(int64(healthzTimeout))
	e.downLive.Store(int64(embeddedDownLive))
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
		// Loopback only, and even there only this process's client: it knows the token.
		Authorization: e.token,
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
	h, err := e.health(srv, stream)
	if err != nil {
		return &StorageError{Dir: e.o.StoreDir, Err: err}
	}
	switch h.StatusCode {
	case http.StatusOK, http.StatusNotFound:
		return nil
	}
	return &StorageError{Dir: e.o.StoreDir, Err: errors.New(h.Error)}
}

// health runs the server's health check of stream, waiting at most healthzTimeout for it. A check
// still running from an earlier call is waited for rather than started again, and while the
// server is wedged (a check already timed out and has not returned) the answer is errWedged at
// once.
func (e *embedded) health(srv *server.Server, stream string) (*server.HealthStatus, error) {
	e.hmu.Lock()
	call := e.pending
	if call == nil {
		call = &healthCall{done: make(chan struct{})}
		healthz := e.healthz
		e.pending = call
		go func() {
			h := healthz(srv, &server.HealthzOptions{Account: server.DEFAULT_GLOBAL_ACCOUNT, Stream: stream})
			e.hmu.Lock()
			call.h = h
			if e.pending == call {
				e.pending = nil
			}
			e.hmu.Unlock()
			close(call.done)
		}()
	} else if e.wedgedSince.Load() != 0 {
		e.hmu.Unlock()
		return nil, errWedged
	}
	e.hmu.Unlock()
	t := time.NewTimer(time.Duration(e.timeout.Load()))
	defer t.Stop()
	select {
	case <-call.done:
		e.wedgedSince.Store(0)
		return call.h, nil
	case <-t.C:
		e.wedgedSince.CompareAndSwap(0, time.Now().UnixNano())
		return nil, errWedged
	}
}

// wedged reports since when the server's health check has not answered (zero while it answers).
func (e *embedded) wedged() time.Time {
	if ns := e.wedgedSince.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return time.Time{}
}

// serverLogger adapts slog to nats-server's Logger.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

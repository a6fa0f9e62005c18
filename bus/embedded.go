package bus

import (
	"fmt"
	"log/slog"

	"github.com/nats-io/nats-server/v2/server"
)

// startEmbedded runs an in-process JetStream server on loopback with file storage under
// o.StoreDir and an fsync after every write.
func startEmbedded(o Options) (*server.Server, error) {
	port := o.Port
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "responder",
		Host:       "127.0.0.1",
		Port:       port,
		NoSigs:     true,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		SyncAlways: true,
		MaxPayload: embeddedMaxPayload,
		// The HTTP monitor, cluster and leaf ports stay closed.
	})
	if err != nil {
		return nil, fmt.Errorf("bus: embedded server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{o.Logger.With("component", "nats")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(embeddedReadyTimeout) {
		srv.Shutdown()
		return nil, fmt.Errorf("bus: embedded server not ready after %s", embeddedReadyTimeout)
	}
	return srv, nil
}

// serverLogger adapts slog to nats-server's Logger.
type serverLogger struct{ l *slog.Logger }

func (s serverLogger) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLogger) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLogger) Debugf(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLogger) Tracef(format string, v ...any)  { s.l.Debug(fmt.Sprintf(format, v...)) }

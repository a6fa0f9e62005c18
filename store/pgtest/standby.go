package pgtest

import (
	"testing"

	"github.com/responder-sre/responder/store/pgserver"
)

// StartStandby starts a streaming-replication standby of primary for the test: pg_basebackup -R
// copies primary (which must be running, e.g. from StartServer) into a new temporary directory
// and the standby starts on its own free port, replaying primary's WAL as it arrives. Like
// StartServer it is stopped and its directory removed when the test ends; Stop and Start work on
// it too. It is read-only: connect to it with URL.
func StartStandby(t testing.TB, primary *Server) *Server {
	t.Helper()
	s, err := pgserver.NewStandby(t.Context(), primary.srv)
	if err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	return startDedicated(t, s, "standby")
}

// Promote promotes a standby (from StartStandby) to a primary that takes writes, waiting until
// the promotion finished: stop its primary first for a failover.
func (s *Server) Promote(t testing.TB) {
	t.Helper()
	if err := s.srv.Promote(t.Context()); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
}

package app

import (
	"errors"
	"net/http"

	"github.com/responder-sre/responder/bus"
)

// livez fails only when the process cannot recover by itself: the embedded JetStream server could
// not be restarted for a minute (see bus/storage.go). A full disk is not such a case: the bus
// restarts its embedded server once there is room again, and a pod restart would not free the
// volume.
func (a *App) livez(w http.ResponseWriter, _ *http.Request) {
	if err := a.bus.Live(); err != nil {
		a.log.Error("not live", "err", err)
		http.Error(w, "bus: the embedded JetStream server cannot be restarted\n", http.StatusServiceUnavailable)
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

// readyzDetail is what /readyz (unauthenticated) may say about a failing check beyond "failing":
// a kind of failure that tells the operator where to look, never hosts, paths or users.
func readyzDetail(err error) string {
	if errors.Is(err, bus.ErrStorage) {
		return "failing: storage cannot be written (disk full?)"
	}
	return "failing"
}

// storeDegraded is /readyz's database check while the store does not answer or processing retries
// a store error: the pod stays ready (intake needs only the bus) and the alerts wait in the stream.
const storeDegraded = "degraded: the store is unavailable; alerts wait on the bus"

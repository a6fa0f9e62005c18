package probe

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
)

// startPrometheus starts Debian's prometheus scraping target (host:port) every second and returns
// its URL.
func startPrometheus(t *testing.T, target string) string {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal(prometheusHint)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: target
    static_configs: [{targets: [%q]}]
`, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	startProcess(t, dir, bin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr,
		"--log.level=warn")
	return "http://" + addr
}

func TestPrometheus(t *testing.T) {
	t.Parallel()
	var value atomic.Uint64
	value.Store(math.Float64bits(0.03))
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "# TYPE probe_test_error_ratio gauge\nprobe_test_error_ratio %g\n", math.Float64frombits(value.Load()))
	}))
	t.Cleanup(target.Close)
	prom := startPrometheus(t, strings.TrimPrefix(target.URL, "http://"))
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: ratio, prometheus: {url: %[1]q, query: probe_test_error_ratio}, firing_when: value > 0.05}
  - {name: scalar, prometheus: {url: %[1]q, query: "scalar(probe_test_error_ratio) * 100"}}
  - {name: nodata, prometheus: {url: %[1]q, query: probe_test_absent_metric}}
  - {name: range, prometheus: {url: %[1]q, query: "probe_test_error_ratio[1m]"}}
  - {name: syntax, prometheus: {url: %[1]q, query: "sum("}}
`, prom)), Options{})

	// About 5s: Prometheus applies discovered targets on a fixed 5s tick before the first scrape.
	testwait.UntilDetail(t, 30*time.Second, "the first scrape is queryable", func() (bool, string) {
		res := runOnce(t, r, "ratio")
		return res.Success && res.Value == 0.03, fmt.Sprintf("%+v", res)
	})
	if res := runOnce(t, r, "scalar"); !res.Success || res.Value != 3 {
		t.Errorf("scalar: %+v, want 3", res)
	}
	value.Store(math.Float64bits(0.08))
	testwait.UntilDetail(t, 10*time.Second, "the new value fires", func() (bool, string) {
		res := runOnce(t, r, "ratio")
		return !res.Success && res.Value == 0.08 && res.Firing && strings.Contains(res.Reason, "value > 0.05"), fmt.Sprintf("%+v", res)
	})
	for _, tc := range []struct{ probe, reason string }{
		{"nodata", "the query returned no data"},
		{"range", "the query returned a matrix"},
		{"syntax", "bad_data"},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			if res := runOnce(t, r, tc.probe); res.Success || !strings.Contains(res.Reason, tc.reason) || !isNaN(res.Value) {
				t.Errorf("%+v, want a failure without value, reason %q", res, tc.reason)
			}
		})
	}
}

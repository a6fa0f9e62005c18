package engine

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
)

// BenchmarkMatch1000Rules measures match on a batch of 256 firing alerts against 1,000 rules as a
// pack has them: 900 pin alert.name or alert.labels.service, 100 pin nothing the index uses; one
// rule in ten has a `for` (its pending incidents are refreshed by every alert that does not match
// it). It reports the time per alert and the refresh keys per batch.
func BenchmarkMatch1000Rules(b *testing.B) {
	m, reg := testMatcher(b, 64<<10)
	var y strings.Builder
	y.WriteString("rules:\n")
	for i := range 1000 {
		var when string
		switch {
		case i < 600:
			when = fmt.Sprintf(`alert.name == "Alert%03d" && alert.labels.severity in ["warning", "critical"]`, i/2)
		case i < 900:
			when = fmt.Sprintf(`alert.labels.service == "svc%03d" && alert.labels.severity == "critical"`, (i-600)/2)
		default:
			when = fmt.Sprintf(`alert.value > %d && alert.labels.severity == "critical"`, i-850)
		}
		fmt.Fprintf(&y, "  - name: r%04d\n    when: '%s'\n", i, when)
		if i%10 == 0 {
			y.WriteString("    for: 5m\n")
		}
		y.WriteString("    actions: [{handler: test.page, params: {target: \"{{ alert.labels.pod }}\"}}]\n")
	}
	set := testRules(b, reg, y.String())
	as := make([]alert.Alert, 256)
	for j := range as {
		as[j] = testAlert(fmt.Sprintf("Alert%03d", j*37%300), alert.StatusFiring, matchNow.Add(-time.Minute),
			map[string]string{"pod": fmt.Sprintf("p-%d", j), "service": fmt.Sprintf("svc%03d", j*11%150), "severity": "warning"})
	}
	var pl *plan
	b.ReportAllocs()
	for b.Loop() {
		pl = m.match(set, as, noneFiring{}, matchNow)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(as)), "ns/alert")
	b.ReportMetric(float64(len(pl.refresh)), "refresh_keys/batch")
}

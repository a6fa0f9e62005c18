package probe

import (
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	success  *prometheus.GaugeVec
	duration *prometheus.GaugeVec
}

// newMetrics registers the probe metrics on reg (nil: unregistered). A Runner built again on the
// same registry (a config reload) shares the collectors already there.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		success: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "responder", Name: "probe_success",
			Help: "Whether the last run of the probe succeeded (1) or failed (0).",
		}, []string{"probe", "kind"}),
		duration: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "responder", Name: "probe_duration_seconds",
			Help: "How long the last run of the probe took.",
		}, []string{"probe", "kind"}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.success, err = register(reg, m.success); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	return m, nil
}

func register(reg prometheus.Registerer, c *prometheus.GaugeVec) (*prometheus.GaugeVec, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return existing, nil
			}
		}
		return nil, fmt.Errorf("register probe metrics: %w", err)
	}
	return c, nil
}

// init creates the series of one probe, at zero until its first run.
func (m *metrics) init(probe, kind string) {
	m.success.WithLabelValues(probe, kind)
	m.duration.WithLabelValues(probe, kind)
}

func (m *metrics) observe(probe, kind string, ok bool, d time.Duration) {
	v := 0.0
	if ok {
		v = 1
	}
	m.success.WithLabelValues(probe, kind).Set(v)
	m.duration.WithLabelValues(probe, kind).Set(d.Seconds())
}

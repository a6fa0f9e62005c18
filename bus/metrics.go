package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	reg             prometheus.Registerer
	cs              []prometheus.Collector
	pending         prometheus.Collector
	redeliveries    prometheus.Counter
	terminated      prometheus.Counter
	published       *prometheus.CounterVec
	publishDuration prometheus.Histogram
	processErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, b *Bus) (*metrics, error) {
	m := &metrics{
		reg: reg,
		// Queried from the server at scrape time (bounded), the last value on error.
		pending: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "responder", Name: "bus_pending_messages",
			Help: "Messages in the alert stream not yet acked by the consumer.",
		}, func() float64 {
			ctx, cancel := context.WithTimeout(b.bg, pendingScrapeTimeout)
			defer cancel()
			n, err := b.Pending(ctx)
			if err != nil {
				return float64(b.lastPend.Load())
			}
			return float64(n)
		}),
		redeliveries: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "responder", Name: "bus_redeliveries_total",
			Help: "Messages received that had been delivered before.",
		}),
		terminated: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "responder", Name: "bus_terminated_total",
			Help: "Messages terminated and dead-lettered (undecodable or permanently failing).",
		}),
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "responder", Name: "bus_publish_total",
			Help: "Publish calls by result (ok, stream_full, unavailable; rejected: stored but for alerts too large by themselves).",
		}, []string{"result"}),
		publishDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "responder", Name: "bus_publish_duration_seconds",
			Help:    "Time from Publish to the JetStream ack.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5},
		}),
		processErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "responder", Name: "bus_process_errors_total",
			Help: "Failed Process calls by kind (transient, permanent).",
		}, []string{"kind"}),
	}
	for _, r := range []string{"ok", "stream_full", "unavailable", "rejected"} {
		m.published.WithLabelValues(r)
	}
	for _, k := range []string{"transient", "permanent"} {
		m.processErrors.WithLabelValues(k)
	}
	for _, c := range []prometheus.Collector{m.pending, m.redeliveries, m.terminated, m.published, m.publishDuration, m.processErrors} {
		if err := reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("bus: metrics already registered (one Bus per registry): %w", err)
			}
			return nil, fmt.Errorf("bus: register metrics: %w", err)
		}
		m.cs = append(m.cs, c)
	}
	return m, nil
}

func (m *metrics) unregister() {
	for _, c := range m.cs {
		m.reg.Unregister(c)
	}
}

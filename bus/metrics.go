package bus

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

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
	batchRequests   prometheus.Histogram
	processErrors   *prometheus.CounterVec
	storeBytes      prometheus.Collector
	lastStoreBytes  atomic.Uint64
	// Embedded server only (registered when it runs).
	storageFree, storageSize prometheus.Collector
	storageRestarts          prometheus.Counter
}

// newMetrics makes b's metrics and registers them with reg. The gauges that ask the server at scrape
// time do so under bg, the bus's background context (b.bg), each within pendingScrapeTimeout.
func newMetrics(bg context.Context, reg prometheus.Registerer, b *Bus) (*metrics, error) {
	m := &metrics{
		reg: reg,
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
		batchRequests: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "responder", Name: "bus_publish_batch_requests",
			Help:    "Publish calls (webhook requests) carried by each message published (group commit).",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256},
		}),
		processErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "responder", Name: "bus_process_errors_total",
			Help: "Failed Process calls by kind (transient, permanent).",
		}, []string{"kind"}),
	}
	m.scraped(bg, b)
	m.storageRestarts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "responder", Name: "bus_storage_restarts_total",
		Help: "Restarts of the embedded JetStream server to reopen its store after a write error (a full disk).",
	})
	cs := []prometheus.Collector{m.pending, m.redeliveries, m.terminated, m.published, m.publishDuration, m.batchRequests, m.processErrors, m.storeBytes}
	if b.emb != nil {
		m.storageFree, m.storageSize = diskGauges(b.o.StoreDir)
		cs = append(cs, m.storageFree, m.storageSize, m.storageRestarts)
	}
	for _, r := range []string{"ok", "stream_full", "unavailable", "rejected"} {
		m.published.WithLabelValues(r)
	}
	for _, k := range []string{"transient", "permanent"} {
		m.processErrors.WithLabelValues(k)
	}
	if err := m.register(cs); err != nil {
		return nil, err
	}
	return m, nil
}

// scraped makes the gauges queried from the server at scrape time (each bounded by
// pendingScrapeTimeout under bg), which report the last value read when the server does not answer.
func (m *metrics) scraped(bg context.Context, b *Bus) {
	m.pending = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "responder", Name: "bus_pending_messages",
		Help: "Messages in the alert stream not yet acked by the consumer.",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(bg, pendingScrapeTimeout)
		defer cancel()
		n, err := b.Pending(ctx)
		if err != nil {
			return float64(b.lastPend.Load())
		}
		return float64(n)
	})
	m.storeBytes = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "responder", Name: "bus_store_bytes",
		Help: "Bytes the alert stream stores (JetStream's count; the last value when the server does not answer).",
	}, func() float64 {
		ctx, cancel := context.WithTimeout(bg, pendingScrapeTimeout)
		defer cancel()
		if info, err := b.stream.Info(ctx); err == nil {
			m.lastStoreBytes.Store(info.State.Bytes)
		}
		return float64(m.lastStoreBytes.Load())
	})
}

// register registers cs with m.reg; on an error it unregisters those it registered.
func (m *metrics) register(cs []prometheus.Collector) error {
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			m.unregister()
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("bus: metrics already registered (one Bus per registry): %w", err)
			}
			return fmt.Errorf("bus: register metrics: %w", err)
		}
		m.cs = append(m.cs, c)
	}
	return nil
}

func (m *metrics) unregister() {
	for _, c := range m.cs {
		m.reg.Unregister(c)
	}
}

// diskGauges report the file system under the embedded server's store (statfs at scrape time;
// NaN when it fails), so that an alert fires before the disk is full.
func diskGauges(dir string) (free, size prometheus.Collector) {
	stat := func(pick func(free, size uint64) uint64) func() float64 {
		return func() float64 {
			f, s, err := diskSpace(dir)
			if err != nil {
				return math.NaN()
			}
			return float64(pick(f, s))
		}
	}
	free = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "responder", Name: "bus_storage_free_bytes",
		Help: "Free bytes (for an unprivileged user) of the file system under the embedded JetStream store (--storage.path).",
	}, stat(func(f, _ uint64) uint64 { return f }))
	size = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "responder", Name: "bus_storage_size_bytes",
		Help: "Size in bytes of the file system under the embedded JetStream store (--storage.path).",
	}, stat(func(_, s uint64) uint64 { return s }))
	return free, size
}

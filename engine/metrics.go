package engine

import (
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	ruleMatches    *prometheus.CounterVec
	ruleErrors     *prometheus.CounterVec
	actions        *prometheus.CounterVec
	actionDuration *prometheus.HistogramVec
	inFlight       *prometheus.GaugeVec
	incidents      *prometheus.CounterVec
	paused         prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer, handlerNames []string) (*metrics, error) {
	m := &metrics{
		ruleMatches: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Name: "rule_matches_total",
			Help: "Alerts that matched a rule's when condition."}, []string{"rule"}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Name: "rule_evaluation_failures_total",
			Help: "Rule evaluations or renders that failed."}, []string{"rule"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Name: "actions_total",
			Help: "Actions that reached a final state, by outcome (the final state)."}, []string{"rule", "handler", "outcome"}),
		actionDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: "responder", Name: "action_duration_seconds",
			Help: "Duration of handler calls.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 9)}, []string{"handler"}),
		inFlight: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: "responder", Name: "actions_in_flight",
			Help: "Handler calls running on this replica."}, []string{"handler"}),
		incidents: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "responder", Name: "incidents_total",
			Help: "Incidents opened or resolved by this replica."}, []string{"event"}),
		paused: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "responder", Name: "paused",
			Help: "1 when disruptive actions are skipped (safety.paused), else 0."}),
	}
	for _, c := range []prometheus.Collector{m.ruleMatches, m.ruleErrors, m.actions, m.actionDuration, m.inFlight, m.incidents, m.paused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, h := range handlerNames {
		m.actionDuration.WithLabelValues(h)
		m.inFlight.WithLabelValues(h)
	}
	for _, ev := range []string{"opened", "fired", "resolved"} {
		m.incidents.WithLabelValues(ev)
	}
	return m, nil
}

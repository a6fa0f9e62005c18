package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"github.com/responder-sre/responder/alert"
)

// payload10 is a notification of 10 firing alerts, the size the load benchmark posts.
func payload10(tb testing.TB) []byte {
	tb.Helper()
	d := &template.Data{Receiver: "responder", Status: "firing", ExternalURL: "http://alertmanager:9093",
		GroupLabels: template.KV{"alertname": "KubePodCrashLooping"}, CommonLabels: template.KV{}, CommonAnnotations: template.KV{}}
	for i := range 10 {
		l := template.KV{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": fmt.Sprintf("checkout-%d", i), "container": "checkout", "severity": "critical", "job": "kube-state-metrics"}
		d.Alerts = append(d.Alerts, template.Alert{Status: "firing", Labels: l, Annotations: template.KV{"summary": "Pod is crash looping.", "description": "Pod shop/checkout is in waiting state."},
			StartsAt: fixedNow, GeneratorURL: "http://prometheus:9090/graph?g0.expr=x", Fingerprint: alert.Fingerprint(l)})
	}
	b, err := json.Marshal(webhook.Message{Data: d, Version: "4", GroupKey: "{}:{alertname=\"KubePodCrashLooping\"}"})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkHandler measures the handler alone (Emit does nothing), per request of 10 alerts.
func BenchmarkHandler(b *testing.B) {
	h, err := NewHandler(Options{Tokens: []string{tokenA}, Emit: func(context.Context, []alert.Alert) error { return nil }, Now: time.Now})
	if err != nil {
		b.Fatal(err)
	}
	body := payload10(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+tokenA)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatal(w.Code)
			}
		}
	})
	b.ReportMetric(float64(b.N*10)/b.Elapsed().Seconds(), "alerts/s")
}

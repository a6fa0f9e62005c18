package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// payload is Alertmanager webhook body number i: n firing KubePodCrashLooping alerts, each on its
// own pod (podName(i, j)).
func payload(i, n int, starts time.Time) []byte {
	type am struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	as := make([]am, n)
	for j := range as {
		as[j] = am{Status: "firing", StartsAt: starts, Labels: map[string]string{
			"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": podName(i, j),
			"container": "app", "severity": "critical", "job": "kube-state-metrics", "prometheus": "monitoring/k8s"},
			Annotations: map[string]string{"summary": "Pod is crash looping.", "description": "Pod shop/checkout is in waiting state (reason: CrashLoopBackOff).",
				"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"}}
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": fmt.Sprintf("{}:{pod_group=\"%d\"}", i), "truncatedAlerts": 0,
		"status": "firing", "receiver": "responder", "groupLabels": map[string]string{"alertname": "KubePodCrashLooping"},
		"commonLabels": map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop"}, "commonAnnotations": map[string]string{},
		"externalURL": "http://alertmanager:9093", "alerts": as})
	return b
}

func podName(i, j int) string { return fmt.Sprintf("checkout-%d-%d", i, j) }

// payloads are bodies first..first+n-1 of perRequest alerts each.
func payloads(first, n, perRequest int, starts time.Time) [][]byte {
	bodies := make([][]byte, n)
	for i := range bodies {
		bodies[i] = payload(first+i, perRequest, starts)
	}
	return bodies
}

// alertsStart is the startsAt of the bench alerts: a minute ago, whole seconds.
func alertsStart() time.Time { return time.Now().UTC().Add(-time.Minute).Truncate(time.Second) }

func newClient(concurrency int) *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}
}

// post sends bodies from concurrency clients and returns each request's latency; with interval > 0
// request i starts at i*interval. The first failure (not a 200) stops it.
func post(ctx context.Context, client *http.Client, url string, bodies [][]byte, concurrency int, interval time.Duration) ([]time.Duration, error) {
	lat := make([]time.Duration, len(bodies))
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fail := func(err error) { once.Do(func() { firstErr = err; cancel() }) }
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) || ctx.Err() != nil {
					return
				}
				if interval > 0 {
					if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
						time.Sleep(d)
					}
				}
				t := time.Now()
				if err := postOne(ctx, client, url, bodies[i]); err != nil {
					fail(err)
					return
				}
				lat[i] = time.Since(t)
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = context.Cause(ctx)
	}
	return lat, firstErr
}

func postOne(ctx context.Context, client *http.Client, url string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("webhook answered %d", resp.StatusCode)
	}
	return nil
}

// pct is the p-th percentile of d, rounded to 10µs.
func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}

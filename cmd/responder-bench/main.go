// Command responder-bench is the load harness behind `make bench`.
//
// It starts a responder in this process (embedded JetStream with fsync on every write, the local
// PostgreSQL that `make db-start` runs, dry-run so every guard is evaluated but nothing is called),
// posts Alertmanager payloads of --per-request alerts each from --concurrency clients over
// loopback, and reports end-to-end alerts/s (first request sent → last action recorded) and webhook
// latency p50/p99. In the same run it measures the baseline: the raw JetStream async-publish rate of
// the same bodies with the same fsync setting and --concurrency publishes in flight (median of 3).
// A second, paced phase reports webhook latency at --paced-rate alerts/s.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/app"
	"github.com/responder-sre/responder/vocab"
)

func main() {
	var (
		total       = flag.Int("alerts", 100_000, "alerts to send in the throughput phase")
		perRequest  = flag.Int("per-request", 10, "alerts per webhook request")
		concurrency = flag.Int("concurrency", 64, "concurrent webhook clients (and publishes in flight for the baseline)")
		pacedRate   = flag.Int("paced-rate", 5000, "alerts/s for the latency phase (0 skips it)")
		pacedFor    = flag.Duration("paced-duration", 10*time.Second, "length of the latency phase")
		adminURL    = flag.String("database-admin-url", "postgres://postgres@127.0.0.1:5433/postgres?sslmode=disable", "PostgreSQL to create the bench database on (make db-start)")
		cpuProfile  = flag.String("cpuprofile", "", "write a CPU profile of the throughput phase to this file")
		rulesN      = flag.Int("rules", 10, "rules loaded (one matches every alert)")
		consumers   = flag.Int("consumers", 2, "bus.consumers of the responder under test")
	)
	flag.Parse()
	if err := run(*total, *perRequest, *concurrency, *pacedRate, *pacedFor, *adminURL, *cpuProfile, *rulesN, *consumers); err != nil {
		fmt.Fprintln(os.Stderr, "responder-bench:", err)
		os.Exit(1)
	}
}

const token = "bench-token"

func run(total, perRequest, concurrency, pacedRate int, pacedFor time.Duration, adminURL, cpuProfile string, rulesN, consumers int) error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "responder-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	requests := total / perRequest
	bodies := make([][]byte, requests)
	starts := time.Now().UTC().Add(-time.Minute).Truncate(time.Second)
	for i := range bodies {
		bodies[i] = payload(i, perRequest, starts)
	}
	fmt.Printf("responder-bench: %d alerts in %d requests of %d, %d clients, body ≈ %d bytes\n",
		requests*perRequest, requests, perRequest, concurrency, len(bodies[0]))

	// The baseline (its own embedded server and store dir) runs three times, spread over the run:
	// before, between and after the phases, so a slow patch of disk hits both sides. Median of 3.
	var rates []float64
	runBaseline := func() error {
		r, err := baseline(filepath.Join(dir, fmt.Sprintf("baseline-%d", len(rates))), bodies, concurrency)
		if err != nil {
			return fmt.Errorf("baseline: %w", err)
		}
		rates = append(rates, r)
		return nil
	}
	if err := runBaseline(); err != nil {
		return err
	}

	dbURL, cleanup, err := benchDatabase(ctx, adminURL)
	if err != nil {
		return err
	}
	defer cleanup()
	a, stop, err := startResponder(ctx, dir, dbURL, rulesN, consumers)
	if err != nil {
		return err
	}
	defer stop()
	url := "http://" + a.Addr() + "/webhook/alertmanager"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: concurrency, MaxConnsPerHost: concurrency}}

	stopProfile, err := startCPUProfile(cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	begin := time.Now()
	lat, err := post(client, url, bodies, concurrency, 0)
	if err != nil {
		return err
	}
	accepted := time.Since(begin)
	want := requests * perRequest
	if err := waitActions(ctx, a, want, 10*time.Minute); err != nil {
		return err
	}
	elapsed := time.Since(begin)
	stopProfile() // the profile covers the throughput phase only
	if err := runBaseline(); err != nil {
		return err
	}

	if pacedRate > 0 {
		if err := pacedPhase(ctx, a, client, url, pacedRate, pacedFor, perRequest, concurrency, requests, want, starts); err != nil {
			return err
		}
	}
	if err := runBaseline(); err != nil {
		return err
	}
	report(rates, lat, concurrency, perRequest, want, accepted, elapsed)
	return nil
}

// startCPUProfile profiles the process into path ("" profiles nothing). The returned stop may be
// called more than once.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() { pprof.StopCPUProfile(); f.Close(); fmt.Println("cpu profile written to", path) })
	}, nil
}

// pacedPhase posts alerts at pacedRate for pacedFor, after the first want alerts, and prints the
// webhook latency once every action is recorded.
func pacedPhase(ctx context.Context, a *app.App, client *http.Client, url string, pacedRate int, pacedFor time.Duration,
	perRequest, concurrency, requests, want int, starts time.Time) error {
	n := int(pacedFor.Seconds() * float64(pacedRate) / float64(perRequest))
	paced := make([][]byte, n)
	for i := range paced {
		paced[i] = payload(requests+i, perRequest, starts)
	}
	interval := time.Duration(float64(time.Second) * float64(perRequest) / float64(pacedRate))
	lat, err := post(client, url, paced, concurrency, interval)
	if err != nil {
		return err
	}
	if err := waitActions(ctx, a, want+n*perRequest, 10*time.Minute); err != nil {
		return err
	}
	fmt.Printf("paced: %d alerts/s for %s: webhook p50 %s p99 %s\n", pacedRate, pacedFor, pct(lat, 50), pct(lat, 99))
	return nil
}

// report prints the baseline (the median of rates), the throughput and the end-to-end ratio.
func report(rates []float64, lat []time.Duration, concurrency, perRequest, want int, accepted, elapsed time.Duration) {
	e2e := float64(want) / elapsed.Seconds()
	sorted := slices.Clone(rates)
	slices.Sort(sorted)
	base := sorted[1]
	fmt.Printf("baseline: raw JetStream async publish (fsync always, %d in flight): %.0f msgs/s, median of %.0f / %.0f / %.0f (before, between, after) = %.0f alerts/s\n",
		concurrency, base, rates[0], rates[1], rates[2], base*float64(perRequest))
	fmt.Printf("throughput: %d alerts accepted in %s (%.0f alerts/s at the webhook); all %d actions recorded after %s\n",
		want, accepted.Round(time.Millisecond), float64(want)/accepted.Seconds(), want, elapsed.Round(time.Millisecond))
	fmt.Printf("end to end: %.0f alerts/s  webhook p50 %s p99 %s  ratio to baseline %.2fx\n",
		e2e, pct(lat, 50), pct(lat, 99), e2e/(base*float64(perRequest)))
}

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
			"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": fmt.Sprintf("checkout-%d-%d", i, j),
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

// baseline publishes bodies to a fresh embedded JetStream (file storage, fsync always) with up to
// inflight async publishes pending and returns messages/s.
func baseline(dir string, bodies [][]byte, inflight int) (float64, error) {
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, NoSigs: true, JetStream: true,
		StoreDir: dir, SyncAlways: true, MaxPayload: 8 << 20})
	if err != nil {
		return 0, err
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		return 0, fmt.Errorf("baseline server not ready")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(inflight))
	if err != nil {
		return 0, err
	}
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "BASELINE", Subjects: []string{"baseline"}, Storage: jetstream.FileStorage,
		Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardNew, Duplicates: 20 * time.Minute}); err != nil {
		return 0, err
	}
	start := time.Now()
	for i, b := range bodies {
		if _, err := js.PublishAsync("baseline", b, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(time.Minute)); err != nil {
			return 0, err
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		return 0, fmt.Errorf("baseline publishes did not complete")
	}
	return float64(len(bodies)) / time.Since(start).Seconds(), nil
}

func benchDatabase(ctx context.Context, adminURL string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", nil, fmt.Errorf("connect to %s (run `make db-start`): %w", adminURL, err)
	}
	name := fmt.Sprintf("responder_bench_%d", os.Getpid())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		conn.Close(ctx)
		return "", nil, err
	}
	cfg, _ := pgx.ParseConfig(adminURL)
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name)
	return url, func() {
		_, _ = conn.Exec(context.WithoutCancel(ctx), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		conn.Close(ctx)
	}, nil
}

func startResponder(ctx context.Context, dir, dbURL string, rulesN, consumers int) (*app.App, func(), error) {
	rules := "rules:\n"
	for i := range rulesN - 1 {
		rules += fmt.Sprintf("  - name: other-%d\n    when: alert.name == \"Other%d\" && alert.labels.severity == \"critical\"\n    actions:\n      - handler: http.request\n        params: {url: \"http://127.0.0.1:9/x\", body: '{{ alert.labels.pod }}'}\n", i, i)
	}
	rules += `  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing" && alert.labels.severity == "critical"
    cooldown: 15m
    actions:
      - handler: http.request
        params:
          url: "http://127.0.0.1:9/restart"
          body: '{{ toJSON({pod: alert.labels.pod, namespace: alert.labels.namespace}) }}'
`
	cfg := fmt.Sprintf("database: {url: %q, max_conns: 16}\nwebhook: {bearer_token: %q}\napi: {token: admin}\nrule_files: [rules.yml]\nhandlers: {http: {allowed_hosts: [\"127.0.0.1:9\"]}}\nbus: {consumers: %d}\n", dbURL, token, consumers)
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(rules), 0o644); err != nil {
		return nil, nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "responder.yml"), []byte(cfg), 0o600); err != nil {
		return nil, nil, err
	}
	a, err := app.New(ctx, app.Options{ConfigFile: filepath.Join(dir, "responder.yml"), ListenAddress: "127.0.0.1:0",
		StoragePath: filepath.Join(dir, "data"), DryRun: true, Version: "bench",
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		return nil, nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = a.Run(runCtx); close(done) }()
	return a, func() { cancel(); <-done }, nil
}

// post sends bodies from concurrency clients; with interval > 0 requests start at that pace.
func post(client *http.Client, url string, bodies [][]byte, concurrency int, interval time.Duration) ([]time.Duration, error) {
	lat := make([]time.Duration, len(bodies))
	var next atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(bodies) {
					return
				}
				if interval > 0 {
					if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
						time.Sleep(d)
					}
				}
				t := time.Now()
				req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(bodies[i]))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						err = fmt.Errorf("webhook answered %d", resp.StatusCode)
					}
				}
				lat[i] = time.Since(t)
				if err != nil {
					once.Do(func() { firstErr = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return lat, firstErr
}

func waitActions(ctx context.Context, a *app.App, want int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var n int
		if err := a.Store().Pool().QueryRow(ctx, `SELECT count(*) FROM actions WHERE state = $1`, vocab.StateDryRun).Scan(&n); err != nil {
			return err
		}
		if n >= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d actions recorded after %s", n, want, limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func pct(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, len(s)*p/100)].Round(10 * time.Microsecond)
}

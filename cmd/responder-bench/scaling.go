package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/clustertest"
	"github.com/responder-sre/responder/vocab"
)

// scalingReplicas are the responder replica counts the scaling phase measures, in order; the
// first is the reference of the others' ratios.
var scalingReplicas = []int{1, 2, 3}

// scalingNodes is the size of the JetStream cluster, and the stream's replicas.
const scalingNodes = 3

// scalingPhaseName is the phase (and database) name of the scaling run with k replicas.
func scalingPhaseName(k int) string { return fmt.Sprintf("%s-%d", phaseScaling, k) }

// scalingPhase measures end-to-end alerts/s with 1, 2 and 3 dry-run responder replicas on a real
// 3-node JetStream cluster (user and password, stream replicas 3, sync_interval always): the same
// --scaling-alerts alerts each time, split evenly over the replicas' webhooks, each run on a fresh
// cluster and a fresh database, and each checked from the store (one incident and one action per
// alert, decided once).
func (b *bench) scalingPhase(ctx context.Context) ([]phaseResult, error) {
	per := b.o.perRequest
	n := max(len(scalingReplicas), b.o.scalingAlerts/per)
	fmt.Printf("\n== %s: %d alerts in %d requests of %d, %d clients split evenly over %v responder replicas on a %d-node JetStream cluster "+
		"(stream replicas %d, sync_interval always), %d rules, dry run\n",
		phaseScaling, n*per, n, per, b.o.concurrency, scalingReplicas, scalingNodes, scalingNodes, b.o.rules)
	bin, err := clustertest.BuildBinary(ctx, logf)
	if err != nil {
		return nil, err
	}
	bodies := payloads(0, n, per, alertsStart()) // the same each time: a fresh stream, so none is a duplicate
	var out []phaseResult
	for _, k := range scalingReplicas {
		r, err := b.scalingRun(ctx, bin, k, bodies, per)
		if err != nil {
			return out, fmt.Errorf("%d replicas: %w", k, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// replicasText is "1 replica", "2 replicas", ...
func replicasText(k int) string {
	if k == 1 {
		return "1 replica"
	}
	return fmt.Sprintf("%d replicas", k)
}

func logf(format string, args ...any) { fmt.Printf(format+"\n", args...) }

// scalingRun is one run of the scaling phase: k replicas.
func (b *bench) scalingRun(ctx context.Context, bin string, k int, bodies [][]byte, per int) (phaseResult, error) {
	phase := scalingPhaseName(k)
	want := len(bodies) * per
	res := phaseResult{Phase: phase, Replicas: k, Alerts: want, PerRequest: per, Concurrency: b.o.concurrency, Rules: b.o.rules}
	dir, err := childDir(b.dir, phase)
	if err != nil {
		return res, err
	}
	c, err := clustertest.New(ctx, bin, scalingNodes, dir, logf)
	if err != nil {
		return res, err
	}
	defer c.Close()
	url, drop, err := b.dbs.create(ctx, phase)
	if err != nil {
		return res, err
	}
	defer drop()
	cfg := b.scalingConfig(url, c.URLWithoutCredentials(), c.Password, randomKey())
	path, err := cfg.write(dir)
	if err != nil {
		return res, err
	}
	rs, urls, err := startReplicas(ctx, path, dir, k)
	defer func() {
		for _, r := range rs {
			r.stop()
		}
	}()
	if err != nil {
		return res, err
	}
	db, err := pgx.Connect(ctx, url)
	if err != nil {
		return res, err
	}
	defer db.Close(context.WithoutCancel(ctx))
	cpu0, nats0, pg0 := respondersCPU(rs), clusterCPU(c), backendCPU(ctx, db)
	begin := time.Now()
	lat, err := postSplit(ctx, urls, bodies, b.o.concurrency)
	if err != nil {
		return res, err
	}
	accepted := time.Since(begin)
	cnt, seen, err := waitSettled(ctx, db, want, 10*time.Minute, rs...)
	if err != nil {
		return res, err
	}
	elapsed := settledAt(begin, seen, cnt).Sub(begin)
	if t99, err := settledQuantile(ctx, db, 0.99); err == nil && t99.After(begin) {
		res.Rate99 = 0.99 * float64(want) / t99.Sub(begin).Seconds()
		fmt.Printf("%s: 99%% of the actions recorded after %s (%.0f alerts/s)\n", phase, t99.Sub(begin).Round(time.Millisecond), res.Rate99)
	}
	cpu, natsCPU, pg := respondersCPU(rs)-cpu0, clusterCPU(c)-nats0, backendCPUSince(pg0, backendCPU(ctx, db))
	res.noteDeliveries(ctx, c)
	check, err := checkStore(ctx, db, want, vocab.StateDryRun)
	if err != nil {
		return res, fmt.Errorf("store check: %w", err)
	}
	fmt.Printf("%s: store: %s\n", phase, check)
	res.Store = &check
	for _, r := range rs {
		res.PeakRSS = max(res.PeakRSS, r.stop().peakRSS)
	}
	res.AcceptedSeconds, res.ElapsedSeconds = accepted.Seconds(), elapsed.Seconds()
	res.WebhookRate, res.Rate = float64(want)/accepted.Seconds(), float64(want)/elapsed.Seconds()
	res.P50ms, res.P99ms = ms(pct(lat, 50)), ms(pct(lat, 99))
	res.CPUSeconds, res.NATSCPUSeconds, res.StoreCPUSeconds = cpu.Seconds(), natsCPU.Seconds(), pg.Seconds()
	res.printScaling(lat)
	return res, nil
}

// startReplicas starts k responders on the config at path, each with its own storage under dir.
// It returns those it started (the caller stops them) and their URLs.
func startReplicas(ctx context.Context, path, dir string, k int) ([]*responder, []string, error) {
	rs, urls := make([]*responder, 0, k), make([]string, 0, k)
	for i := range k {
		r, err := startResponder(ctx, childSpec{ConfigFile: path, StoragePath: filepath.Join(dir, fmt.Sprintf("data-%d", i+1)), DryRun: true})
		if err != nil {
			return rs, urls, fmt.Errorf("replica %d: %w", i+1, err)
		}
		rs, urls = append(rs, r), append(urls, r.url)
	}
	return rs, urls, nil
}

// noteDeliveries records (and prints) the shared consumer's deliveries against the stream's
// messages: more deliveries than messages are redeliveries.
func (res *phaseResult) noteDeliveries(ctx context.Context, c *clustertest.Cluster) {
	ci, err := c.ConsumerInfoContext(ctx, bus.DefaultStream, bus.DefaultDurable)
	if err != nil {
		fmt.Printf("%s: the consumer's info: %v\n", res.Phase, err)
		return
	}
	res.Messages, res.Deliveries = ci.Delivered.Stream, ci.Delivered.Consumer
	fmt.Printf("%s: the consumer made %d deliveries of the stream's %d messages (%d again: a delivery lost or unacked is redelivered, at the latest after ack_wait %s)\n",
		res.Phase, ci.Delivered.Consumer, ci.Delivered.Stream, ci.Delivered.Consumer-ci.Delivered.Stream, ci.Config.AckWait)
}

// printScaling prints a scaling run's figures: intake, end to end, webhook latency (lat), CPU.
func (res *phaseResult) printScaling(lat []time.Duration) {
	k, want := replicasText(res.Replicas), res.Alerts
	fmt.Printf("%s: %d alerts accepted by %s in %s (%.0f alerts/s at the webhooks); all %d actions recorded after %s\n",
		res.Phase, want, k, secs(res.AcceptedSeconds), res.WebhookRate, want, secs(res.ElapsedSeconds))
	fmt.Printf("%s: end to end %.0f alerts/s; webhook p50 %s p99 %s\n", res.Phase, res.Rate, pct(lat, 50), pct(lat, 99))
	e := res.ElapsedSeconds
	fmt.Printf("%s: CPU in the phase: %s %.1f s (%.2f cores), the %d nats-servers %.1f s (%.2f cores), their PostgreSQL sessions %.1f s (%.2f cores)\n",
		res.Phase, k, res.CPUSeconds, res.CPUSeconds/e, scalingNodes, res.NATSCPUSeconds, res.NATSCPUSeconds/e, res.StoreCPUSeconds, res.StoreCPUSeconds/e)
}

// secs is s seconds as a duration rounded to the millisecond, for printing.
func secs(s float64) time.Duration {
	return time.Duration(s * float64(time.Second)).Round(time.Millisecond)
}

// scalingConfig is the configuration every replica of a scaling run shares: the dry-run phases'
// with the external cluster at natsURL (user clustertest.User and password), stream replicas 3 and
// signingKey.
func (b *bench) scalingConfig(dbURL, natsURL, password, signingKey string) responderConfig {
	cfg := b.config()
	cfg.dbURL = dbURL
	cfg.external = &externalBus{url: natsURL, user: clustertest.User, password: password, signingKey: signingKey, replicas: scalingNodes}
	return cfg
}

// randomKey is a bus signing key: 32 random bytes, hex.
func randomKey() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// splitEvenly splits bodies into k contiguous shares whose sizes differ by at most one, and
// concurrency clients likewise (each share at least one client).
func splitEvenly(bodies [][]byte, concurrency, k int) (shares [][][]byte, clients []int) {
	for i := range k {
		shares = append(shares, bodies[i*len(bodies)/k:(i+1)*len(bodies)/k])
		clients = append(clients, max(1, (i+1)*concurrency/k-i*concurrency/k))
	}
	return shares, clients
}

// postSplit posts bodies split evenly over the webhook urls (and the concurrency clients with
// them), all at once, and returns every request's latency. The first failure stops it.
func postSplit(ctx context.Context, urls []string, bodies [][]byte, concurrency int) ([]time.Duration, error) {
	shares, clients := splitEvenly(bodies, concurrency, len(urls))
	client := newClient(concurrency)
	lats := make([][]time.Duration, len(urls))
	errs := make([]error, len(urls))
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	for i, u := range urls {
		wg.Go(func() {
			lats[i], errs[i] = post(ctx, client, u, shares[i], clients[i], 0)
			if errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	var all []time.Duration
	for _, l := range lats {
		all = append(all, l...)
	}
	for i, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return all, fmt.Errorf("replica %d: %w", i+1, err)
		}
	}
	return all, errors.Join(errs...)
}

// respondersCPU is the replicas' CPU time so far.
func respondersCPU(rs []*responder) time.Duration {
	var d time.Duration
	for _, r := range rs {
		d += r.cpu()
	}
	return d
}

// clusterCPU is the nats-servers' CPU time so far (0 when /proc is not readable).
func clusterCPU(c *clustertest.Cluster) time.Duration {
	var d time.Duration
	for _, nd := range c.Nodes {
		if pid := nd.Pid(); pid > 0 {
			d += readUsage(pid).cpu
		}
	}
	return d
}

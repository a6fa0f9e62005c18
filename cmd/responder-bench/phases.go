package main

import (
	"context"
	"fmt"
	"runtime"
	"time"

	"github.com/responder-sre/responder/vocab"
)

// phaseResult is what one phase measured (also written to --json).
type phaseResult struct {
	Phase string `json:"phase"`
	// Replicas is the number of responder replicas (the scaling phase; 0 elsewhere: one).
	Replicas    int `json:"replicas,omitempty"`
	Alerts      int `json:"alerts"`
	PerRequest  int `json:"per_request"`
	Concurrency int `json:"concurrency"`
	Rules       int `json:"rules"`
	// AcceptedSeconds is first request → last 200; ElapsedSeconds first request → last action
	// settled (recorded dry_run, or succeeded in the notify phase).
	AcceptedSeconds float64 `json:"accepted_s"`
	ElapsedSeconds  float64 `json:"elapsed_s"`
	// WebhookRate is alerts/s accepted; Rate alerts/s end to end (actions/s in the notify phase).
	WebhookRate float64 `json:"webhook_rate"`
	Rate        float64 `json:"rate"`
	P50ms       float64 `json:"webhook_p50_ms"`
	P99ms       float64 `json:"webhook_p99_ms"`
	// LagSeconds (paced) is last request answered → last action settled.
	LagSeconds float64 `json:"lag_s,omitempty"`
	// PeakRSS is the responder's VmHWM in bytes (the highest of the replicas'); CPUSeconds its CPU
	// time during the phase (the sum of the replicas').
	PeakRSS    int64   `json:"peak_rss_bytes"`
	CPUSeconds float64 `json:"cpu_s"`
	// StoreCPUSeconds (load phases) is the CPU time of the responder's PostgreSQL sessions during
	// the phase, when the server runs on this machine; a lower bound (sessions that ended are not
	// counted), without the server's background processes.
	StoreCPUSeconds float64 `json:"store_cpu_s,omitempty"`
	// NATSCPUSeconds (scaling) is the CPU time of the cluster's nats-servers during the phase.
	NATSCPUSeconds float64 `json:"nats_cpu_s,omitempty"`
	// Rate99 (scaling) is alerts/s until 99% of the actions were recorded: the end-to-end rate
	// without the tail (a delivery the consumer lost waits for its redelivery).
	Rate99 float64 `json:"rate_99,omitempty"`
	// Messages and Deliveries (scaling) are the messages the stream received and the deliveries
	// the durable consumer made of them (redeliveries included).
	Messages   uint64      `json:"messages,omitempty"`
	Deliveries uint64      `json:"deliveries,omitempty"`
	Store      *storeCheck `json:"store,omitempty"`
	Sink       *sinkCount  `json:"sink,omitempty"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func gomaxprocs() int { return runtime.GOMAXPROCS(0) }

// loadPhase posts bodies (perRequest alerts each) as fast as concurrency clients can into a fresh
// dry-run responder, waits until every action is recorded, and checks the store.
func (b *bench) loadPhase(ctx context.Context, phase string, bodies [][]byte, perRequest, concurrency int) (phaseResult, error) {
	want := len(bodies) * perRequest
	res := phaseResult{Phase: phase, Alerts: want, PerRequest: perRequest, Concurrency: concurrency, Rules: b.o.rules}
	fmt.Printf("\n== %s: %d alerts in %d requests of %d (≈ %d bytes), %d clients, %d rules, dry run\n",
		phase, want, len(bodies), perRequest, len(bodies[0]), concurrency, b.o.rules)
	e, err := b.startPhase(ctx, phase, b.config(), true)
	if err != nil {
		return res, err
	}
	defer e.close(ctx)
	cpu0, pg0 := e.r.cpu(), backendCPU(ctx, e.db)
	begin := time.Now()
	lat, err := post(ctx, newClient(concurrency), e.r.url, bodies, concurrency, 0)
	if err != nil {
		return res, err
	}
	accepted := time.Since(begin)
	c, seen, err := waitSettled(ctx, e.db, want, 10*time.Minute, e.r)
	if err != nil {
		return res, err
	}
	elapsed := settledAt(begin, seen, c).Sub(begin)
	cpu, pg := e.r.cpu()-cpu0, backendCPUSince(pg0, backendCPU(ctx, e.db))
	res.Store, err = b.check(ctx, e, want, vocab.StateDryRun)
	if err != nil {
		return res, err
	}
	u := e.close(ctx)
	res.AcceptedSeconds, res.ElapsedSeconds = accepted.Seconds(), elapsed.Seconds()
	res.WebhookRate, res.Rate = float64(want)/accepted.Seconds(), float64(want)/elapsed.Seconds()
	res.P50ms, res.P99ms = ms(pct(lat, 50)), ms(pct(lat, 99))
	res.PeakRSS, res.CPUSeconds = u.peakRSS, cpu.Seconds()
	fmt.Printf("%s: %d alerts accepted in %s (%.0f alerts/s at the webhook); all %d actions recorded after %s\n",
		phase, want, accepted.Round(time.Millisecond), res.WebhookRate, want, elapsed.Round(time.Millisecond))
	fmt.Printf("%s: end to end %.0f alerts/s; webhook p50 %s p99 %s\n", phase, res.Rate, pct(lat, 50), pct(lat, 99))
	printUsage(phase, u, cpu, elapsed)
	if pg > 0 {
		res.StoreCPUSeconds = pg.Seconds()
		fmt.Printf("%s: its PostgreSQL sessions: CPU %.1f s in the phase (%.2f cores; %.0f µs per alert, the responder %.0f µs)\n",
			phase, pg.Seconds(), pg.Seconds()/elapsed.Seconds(), float64(pg.Microseconds())/float64(want), float64(cpu.Microseconds())/float64(want))
	}
	return res, nil
}

// settledAt is when the last action was recorded: the latest finished_at the store holds if it
// falls between begin and the poll that saw every action settled (more precise than the poll),
// else that poll.
func settledAt(begin, seen time.Time, c actionCounts) time.Time {
	if c.last.After(begin) && !c.last.After(seen) {
		return c.last
	}
	return seen
}

// check runs the store check and prints it.
func (b *bench) check(ctx context.Context, e *phaseEnv, want int, state vocab.State) (*storeCheck, error) {
	c, err := checkStore(ctx, e.db, want, state)
	if err != nil {
		return nil, fmt.Errorf("store check: %w", err)
	}
	fmt.Println("store:", c)
	return &c, nil
}

func printUsage(phase string, u procUsage, cpu, elapsed time.Duration) {
	rss := "unknown"
	if u.peakRSS > 0 {
		rss = fmt.Sprintf("%.0f MB", float64(u.peakRSS)/1e6)
	}
	fmt.Printf("%s: responder peak RSS %s, CPU %.1f s in the phase (%.2f cores)\n", phase, rss, cpu.Seconds(), cpu.Seconds()/elapsed.Seconds())
}

// pacedPhase posts at --paced-rate alerts/s for --paced-duration, after a one-second warm-up at the
// same rate (not measured: the client's connections and the responder's first batches), into a
// fresh dry-run responder, and reports the webhook latency, then how long after the last request
// the last action was recorded.
func (b *bench) pacedPhase(ctx context.Context) (phaseResult, error) {
	per := b.o.perRequest
	n := max(1, int(b.o.pacedFor.Seconds()*float64(b.o.pacedRate)/float64(per)))
	warm := max(1, b.o.pacedRate/per)
	want := (warm + n) * per
	res := phaseResult{Phase: phasePaced, Alerts: n * per, PerRequest: per, Concurrency: b.o.concurrency, Rules: b.o.rules}
	fmt.Printf("\n== %s: %d alerts/s for %s (%d requests of %d) after a 1s warm-up, %d clients, %d rules, dry run\n",
		phasePaced, b.o.pacedRate, b.o.pacedFor, n, per, b.o.concurrency, b.o.rules)
	bodies := payloads(0, warm+n, per, alertsStart())
	e, err := b.startPhase(ctx, phasePaced, b.config(), true)
	if err != nil {
		return res, err
	}
	defer e.close(ctx)
	client := newClient(b.o.concurrency)
	interval := time.Duration(float64(time.Second) * float64(per) / float64(b.o.pacedRate))
	if _, err := post(ctx, client, e.r.url, bodies[:warm], b.o.concurrency, interval); err != nil {
		return res, err
	}
	cpu0 := e.r.cpu()
	begin := time.Now()
	lat, err := post(ctx, client, e.r.url, bodies[warm:], b.o.concurrency, interval)
	if err != nil {
		return res, err
	}
	posted := time.Now()
	c, seen, err := waitSettled(ctx, e.db, want, 10*time.Minute, e.r)
	if err != nil {
		return res, err
	}
	last := settledAt(begin, seen, c)
	cpu := e.r.cpu() - cpu0
	if res.Store, err = b.check(ctx, e, want, vocab.StateDryRun); err != nil {
		return res, err
	}
	u := e.close(ctx)
	res.AcceptedSeconds, res.ElapsedSeconds = posted.Sub(begin).Seconds(), last.Sub(begin).Seconds()
	res.WebhookRate, res.Rate = float64(n*per)/res.AcceptedSeconds, float64(n*per)/res.ElapsedSeconds
	res.P50ms, res.P99ms = ms(pct(lat, 50)), ms(pct(lat, 99))
	res.LagSeconds = max(0, last.Sub(posted).Seconds())
	res.PeakRSS, res.CPUSeconds = u.peakRSS, cpu.Seconds()
	fmt.Printf("%s: %d alerts/s for %s: webhook p50 %s p99 %s; the last action recorded %.2fs after the last request\n",
		phasePaced, b.o.pacedRate, b.o.pacedFor, pct(lat, 50), pct(lat, 99), res.LagSeconds)
	printUsage(phasePaced, u, cpu, last.Sub(begin))
	return res, nil
}

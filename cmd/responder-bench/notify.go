package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/responder-sre/responder/vocab"
)

// sink is the notify phase's HTTP target: it answers 200 at once and counts the requests by the
// pod their body names.
type sink struct {
	srv  *http.Server
	addr string
	want int

	mu    sync.Mutex
	pods  map[string]int
	hits  int
	bad   int       // bodies without a pod
	wantT time.Time // when the want-th request arrived
}

// sinkCount is what the sink received.
type sinkCount struct {
	Hits     int `json:"hits"`
	Distinct int `json:"distinct_pods"`
	// Twice is hits beyond one per pod; Bad hits whose body names no pod.
	Twice int `json:"twice"`
	Bad   int `json:"bad"`
}

func startSink(want int) (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{addr: ln.Addr().String(), want: want, pods: make(map[string]int, want)}
	s.srv = &http.Server{Handler: http.HandlerFunc(s.serve), ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

func (s *sink) serve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Pod string `json:"pod"`
	}
	b, _ := io.ReadAll(r.Body)
	err := json.Unmarshal(b, &body)
	now := time.Now()
	s.mu.Lock()
	s.hits++
	if err != nil || body.Pod == "" {
		s.bad++
	} else {
		s.pods[body.Pod]++
	}
	if s.hits == s.want {
		s.wantT = now
	}
	s.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (s *sink) count() (sinkCount, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := sinkCount{Hits: s.hits, Distinct: len(s.pods), Bad: s.bad}
	for _, n := range s.pods {
		c.Twice += n - 1
	}
	return c, s.wantT
}

func (s *sink) close() { _ = s.srv.Close() }

// notifyPhase has a fresh responder, not in dry run, execute --notify-actions http.request actions
// (class notify, all to one URL on the harness's sink) and reports actions/s from the first
// request to the last action recorded succeeded (and to the last sink hit). The sink must see each
// alert's pod exactly once.
func (b *bench) notifyPhase(ctx context.Context) (phaseResult, error) {
	per := b.o.perRequest
	n := max(1, b.o.notifyActions/per)
	want := n * per
	res := phaseResult{Phase: phaseNotify, Alerts: want, PerRequest: per, Concurrency: b.o.concurrency, Rules: b.o.rules}
	s, err := startSink(want)
	if err != nil {
		return res, err
	}
	defer s.close()
	fmt.Printf("\n== %s: %d http.request actions (class notify) to one URL, http://%s/notify, executed (not dry run); %d requests of %d\n",
		phaseNotify, want, s.addr, n, per)
	cfg := b.config()
	cfg.actionURL, cfg.notify, cfg.allowedHosts = "http://"+s.addr+"/notify", true, []string{s.addr}
	e, err := b.startPhase(ctx, phaseNotify, cfg, false)
	if err != nil {
		return res, err
	}
	defer e.close(ctx)
	bodies := payloads(0, n, per, alertsStart())
	cpu0 := e.r.cpu()
	begin := time.Now()
	if _, err := post(ctx, newClient(b.o.concurrency), e.r.url, bodies, b.o.concurrency, 0); err != nil {
		return res, err
	}
	accepted := time.Since(begin)
	c, seen, err := waitSettled(ctx, e.db, want, 10*time.Minute, e.r)
	if err != nil {
		return res, err
	}
	end := settledAt(begin, seen, c)
	cpu := e.r.cpu() - cpu0
	time.Sleep(500 * time.Millisecond) // a request sent twice arrives now or never
	if res.Store, err = b.check(ctx, e, want, vocab.StateSucceeded); err != nil {
		return res, err
	}
	sc, wantT := s.count()
	res.Sink = &sc
	u := e.close(ctx)
	res.AcceptedSeconds, res.ElapsedSeconds = accepted.Seconds(), end.Sub(begin).Seconds()
	res.WebhookRate, res.Rate = float64(want)/accepted.Seconds(), float64(c.succeeded)/res.ElapsedSeconds
	res.PeakRSS, res.CPUSeconds = u.peakRSS, cpu.Seconds()
	hitRate := "never reached"
	if !wantT.IsZero() {
		hitRate = fmt.Sprintf("%.1f actions/s (%d hits after %s)", float64(want)/wantT.Sub(begin).Seconds(), want, wantT.Sub(begin).Round(time.Millisecond))
	}
	fmt.Printf("%s: %d of %d actions succeeded after %s: %.1f actions/s; to the sink's %dth hit: %s\n",
		phaseNotify, c.succeeded, want, end.Sub(begin).Round(time.Millisecond), res.Rate, want, hitRate)
	fmt.Printf("%s: sink: %d hits, %d distinct pods, %d twice, %d without a pod\n", phaseNotify, sc.Hits, sc.Distinct, sc.Twice, sc.Bad)
	printUsage(phaseNotify, u, cpu, end.Sub(begin))
	if c.succeeded < want {
		fmt.Printf("%s: WARNING: %d actions did not succeed (see the responder's log above)\n", phaseNotify, want-c.succeeded)
	}
	return res, nil
}

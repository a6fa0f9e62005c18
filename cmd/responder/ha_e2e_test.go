package main_test

// End-to-end tests of high availability (issue 4, "HA without duplicate effects"): three replicas
// of the built binary sharing one external JetStream and one PostgreSQL take an alert storm with
// Alertmanager-style re-sends while one of them is killed with SIGKILL, and every intended effect
// happens at most once (exactly once for what succeeded); a poison message on the stream is
// dead-lettered and audited while the queue keeps flowing.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus/bustest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

const restartPrefix = "/hooks/restart/"

// haSink answers 200 after a random 20-50ms and counts calls per path and per Idempotency-Key on
// arrival: a call cut short by a crash may still have acted downstream.
type haSink struct {
	*httptest.Server
	total atomic.Int64
	mu    sync.Mutex
	paths map[string]int
	keys  map[string]int
}

func newHASink(t *testing.T) *haSink {
	s := &haSink{paths: map[string]int{}, keys: map[string]int{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.paths[r.URL.Path]++
		s.keys[r.Header.Get("Idempotency-Key")]++
		s.mu.Unlock()
		s.total.Add(1)
		select {
		case <-time.After(time.Duration(20+rand.IntN(31)) * time.Millisecond):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *haSink) snapshot() (paths, keys map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	paths, keys = make(map[string]int, len(s.paths)), make(map[string]int, len(s.keys))
	for k, v := range s.paths {
		paths[k] = v
	}
	for k, v := range s.keys {
		keys[k] = v
	}
	return paths, keys
}

// haSetup writes the shared config (via setup) and a rule file restarting crash-looping pods at s.
func haSetup(t *testing.T, s *haSink, dbURL, extra string) string {
	t.Helper()
	dir := setup(t, &sink{Server: s.Server}, dbURL, extra)
	rules := fmt.Sprintf(`rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        params:
          url: "http://%s%s{{ alert.labels.pod }}"
`, s.Listener.Addr().String(), restartPrefix)
	if err := os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(rules), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startReplicas starts n replicas of `responder serve` on dir at once (each with its own port and
// storage path) and waits until every one answers /readyz.
func startReplicas(t *testing.T, dir string, n int) []*proc {
	t.Helper()
	ps := make([]*proc, n)
	// One after the other: replicas that create or update the stream and its consumer at the same
	// moment trip a data race inside nats-server (fileStore.UpdateConfig vs ConsumerStore), which
	// -race reports because the server runs in this test process.
	for i := range ps {
		ps[i] = serve(t, dir, t.TempDir(), freePort(t))
	}
	return ps
}

type amAlert = map[string]any

func crashLooping(pod string, starts time.Time) amAlert {
	return amAlert{"status": "firing", "startsAt": starts, "endsAt": time.Time{},
		"labels": map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": pod}}
}

var webhookClient = &http.Client{Timeout: 15 * time.Second}

// postGroup posts one Alertmanager v4 payload and returns the status code (0 with the error when
// the request got no answer, e.g. the replica is dead).
func postGroup(p *proc, groupKey string, alerts []amAlert) (int, error) {
	body, err := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "responder",
		"groupKey": groupKey, "alerts": alerts})
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequest(http.MethodPost, p.base+"/webhook/alertmanager", bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+hookToken)
	resp, err := webhookClient.Do(req)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

type haIncident struct {
	ID     int64             `json:"id"`
	State  string            `json:"state"`
	Labels map[string]string `json:"labels"`
}

func haIncidents(t *testing.T, p *proc) []haIncident {
	t.Helper()
	var all []haIncident
	cursor := ""
	for {
		var l struct {
			Items      []haIncident `json:"items"`
			NextCursor string       `json:"next_cursor"`
		}
		p.get(t, "/api/v1/incidents?limit=1000&cursor="+cursor, &l)
		all = append(all, l.Items...)
		if l.NextCursor == "" {
			return all
		}
		cursor = l.NextCursor
	}
}

// haActions lists every action (following next_cursor) with its owner.
func haActions(t *testing.T, p *proc) []ctlAction {
	t.Helper()
	var all []ctlAction
	cursor := ""
	for {
		var l struct {
			Items      []ctlAction `json:"items"`
			NextCursor string      `json:"next_cursor"`
		}
		p.get(t, "/api/v1/actions?limit=1000&cursor="+cursor, &l)
		all = append(all, l.Items...)
		if l.NextCursor == "" {
			return all
		}
		cursor = l.NextCursor
	}
}

func actionPod(a ctlAction) string {
	u := fmt.Sprint(a.Params["url"])
	i := strings.Index(u, restartPrefix)
	if i < 0 {
		return ""
	}
	return u[i+len(restartPrefix):]
}

type post struct {
	replica int
	group   int
	alerts  []amAlert
	what    string // first, resend, reorder, grown
}

func TestHAThreeReplicasExactlyOnce(t *testing.T) {
	const (
		pods, perGroup, groups = 150, 5, 30
		maxConcurrent          = 8
	)
	t0 := time.Now()
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	t.Logf("seed %d", seed)

	nats := bustest.Start(t)
	s := newHASink(t)
	dir := haSetup(t, s, pgtest.NewDatabase(t), fmt.Sprintf(
		"nats:\n  url: %s\nbus:\n  replicas: 1\nsafety:\n  lease_duration: 2s\n  max_concurrent_actions: %d\n", nats.URL(), maxConcurrent))
	rs := startReplicas(t, dir, 3)
	query := rs[0] // never killed
	tReady := time.Now()

	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	group := make([][]amAlert, groups)
	for g := range groups {
		for i := range perGroup {
			group[g] = append(group[g], crashLooping(fmt.Sprintf("pod-%03d", g*perGroup+i), starts))
		}
	}
	// Each group to a random replica, then again (the same payload) to a different one; ten groups a
	// third time with the alerts in another order; ten groups grown by the first alert of the next
	// group (Alertmanager re-sends a group with all its alerts when one joins: a new message id, so
	// the duplicate reaches the database instead of being dropped by JetStream).
	var before, after []post
	for g := range groups {
		first := rng.IntN(3)
		second := (first + 1 + rng.IntN(2)) % 3
		before = append(before, post{first, g, group[g], "first"})
		resend := post{second, g, group[g], "resend"}
		if g%2 == 0 {
			before = append(before, resend)
		} else {
			after = append(after, resend)
		}
	}
	for _, g := range rng.Perm(groups)[:10] {
		shuffled := slices.Clone(group[g])
		for slices.Equal(podsOf(shuffled), podsOf(group[g])) {
			rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		}
		after = append(after, post{rng.IntN(3), g, shuffled, "reorder"})
	}
	for _, g := range rng.Perm(groups)[:10] {
		grown := append(slices.Clone(group[g]), group[(g+1)%groups][0])
		after = append(after, post{rng.IntN(3), g, grown, "grown"})
	}
	rng.Shuffle(len(before), func(i, j int) { before[i], before[j] = before[j], before[i] })
	rng.Shuffle(len(after), func(i, j int) { after[i], after[j] = after[j], after[i] })

	var (
		mu             sync.Mutex
		accepted       = map[string]bool{}
		outcomes       = map[string]int{} // "<what> <code or error>" → posts
		killed         atomic.Bool
		postsAfterKill atomic.Int64
	)
	storm := func(ps []post) *sync.WaitGroup {
		var wg sync.WaitGroup
		work := make(chan post)
		for range 6 {
			wg.Go(func() {
				for p := range work {
					code, err := postGroup(rs[p.replica], fmt.Sprintf("group-%d", p.group), p.alerts)
					if killed.Load() {
						postsAfterKill.Add(1)
					}
					mu.Lock()
					if err != nil {
						outcomes[p.what+" error"]++
					} else {
						outcomes[fmt.Sprintf("%s %d", p.what, code)]++
					}
					if code == 200 {
						for _, pod := range podsOf(p.alerts) {
							accepted[pod] = true
						}
					}
					mu.Unlock()
				}
			})
		}
		wg.Go(func() {
			for _, p := range ps {
				work <- p
			}
			close(work)
		})
		return &wg
	}
	tStorm := time.Now()
	first := storm(before)

	// Mid-storm, once the sink has seen 30 calls, SIGKILL one of the two replicas not queried: the
	// one with the most actions running right now, so the lease path is exercised (polled briefly,
	// since a listing can fall between two actions; a random one if none is seen running).
	testwait.Until(t, 30*time.Second, "30 calls at the sink", func() bool { return s.total.Load() >= 30 })
	victim, runningAtKill := 1+rng.IntN(2), 0
	pids := map[string]int{fmt.Sprint(rs[1].cmd.Process.Pid): 1, fmt.Sprint(rs[2].cmd.Process.Pid): 2}
	for deadline := time.Now().Add(5 * time.Second); runningAtKill == 0 && time.Now().Before(deadline); {
		var l struct{ Items []ctlAction }
		query.get(t, "/api/v1/actions?state=running&limit=1000", &l)
		n := map[int]int{}
		for _, a := range l.Items {
			if i, ok := pids[ownerPID(a.Owner)]; ok {
				n[i]++
			}
		}
		for i, c := range n {
			if c > runningAtKill {
				victim, runningAtKill = i, c
			}
		}
	}
	v := rs[victim]
	callsAtKill := s.total.Load()
	if err := v.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	tKill := time.Now()
	_ = v.cmd.Wait()
	second := storm(after)
	first.Wait()
	second.Wait()
	tStormEnd := time.Now()
	t.Logf("killed replica %d (pid %d, %d actions running) after %d sink calls, %s into the storm; %d posts answered after the kill; outcomes %v",
		victim, v.cmd.Process.Pid, runningAtKill, callsAtKill, tKill.Sub(tStorm).Round(time.Millisecond), postsAfterKill.Load(), outcomes)
	if len(accepted) == 0 {
		t.Fatal("no alert was accepted")
	}

	// Every accepted pod's action ends succeeded (or unknown, if the killed replica ran it) and
	// nothing is left planned or running.
	pending := map[string]bool{"planned": true, "running": true, "awaiting_approval": true, "approved": true}
	slow := time.Now().Add(10 * time.Second)
	testwait.Until(t, 90*time.Second, "every accepted pod's action to reach a final state", func() bool {
		have := map[string]bool{}
		var waiting, missing []string
		for _, a := range haActions(t, query) {
			if pending[a.State] {
				waiting = append(waiting, fmt.Sprintf("%d %s %s owner %s", a.ID, actionPod(a), a.State, a.Owner))
			}
			have[actionPod(a)] = true
		}
		for pod := range accepted {
			if !have[pod] {
				missing = append(missing, pod)
			}
		}
		if (len(waiting) > 0 || len(missing) > 0) && !slow.IsZero() && time.Now().After(slow) {
			slow = time.Time{} // say it once
			slices.Sort(missing)
			t.Logf("still waiting after 10s: no action yet for %d accepted pods %v; unfinished actions %v", len(missing), missing, waiting)
		}
		return len(waiting) == 0 && len(missing) == 0
	})
	tFinal := time.Now()

	acts := haActions(t, query)
	paths, keys := s.snapshot()
	byPod := map[string][]ctlAction{}
	states := map[string]int{}
	for _, a := range acts {
		byPod[actionPod(a)] = append(byPod[actionPod(a)], a)
		states[a.State]++
		switch a.State {
		case "succeeded":
			if n := paths[restartPrefix+actionPod(a)]; n != 1 {
				t.Errorf("action %d (%s) succeeded with %d calls at the sink, want exactly 1", a.ID, actionPod(a), n)
			}
			if n := keys[fmt.Sprintf("responder-action-%d", a.ID)]; n != 1 {
				t.Errorf("action %d succeeded with its Idempotency-Key seen %d times, want 1", a.ID, n)
			}
		case "unknown":
			if a.Reason != "lease_expired" {
				t.Errorf("action %d (%s) unknown with reason %q, want lease_expired", a.ID, actionPod(a), a.Reason)
			}
			if pid := ownerPID(a.Owner); pid != fmt.Sprint(v.cmd.Process.Pid) {
				t.Errorf("action %d (%s) unknown but owned by %q, not the killed replica (pid %d)", a.ID, actionPod(a), a.Owner, v.cmd.Process.Pid)
			}
		default:
			t.Errorf("action %d (%s): state %q reason %q, want succeeded or unknown", a.ID, actionPod(a), a.State, a.Reason)
		}
	}
	for pod := range accepted {
		if n := len(byPod[pod]); n != 1 {
			t.Errorf("pod %s was answered 200 and has %d actions, want exactly 1", pod, n)
		}
	}
	for pod, as := range byPod {
		if !accepted[pod] {
			t.Logf("pod %q has %d actions but no post for it got a 200 (it reached the stream through a request cut by the kill)", pod, len(as))
		}
	}
	if states["unknown"] > maxConcurrent {
		t.Errorf("%d unknown actions, more than the killed replica's %d slots", states["unknown"], maxConcurrent)
	}
	for path, n := range paths {
		if n > 1 {
			t.Errorf("%s called %d times at the sink", path, n)
		}
	}
	for k, n := range keys {
		if n > 1 {
			t.Errorf("Idempotency-Key %q used %d times", k, n)
		}
	}
	incs := haIncidents(t, query)
	perPod := map[string]int{}
	for _, in := range incs {
		perPod[in.Labels["pod"]]++
	}
	for pod, n := range perPod {
		if n != 1 {
			t.Errorf("pod %s has %d incidents", pod, n)
		}
	}
	if len(incs) != len(accepted) {
		t.Errorf("incidents = %d, accepted pods = %d", len(incs), len(accepted))
	}
	t.Logf("accepted %d/%d pods; actions %v; sink calls %d (%d paths); replicas ready in %s, storm %s, final %s after the storm; total %s",
		len(accepted), pods, states, s.total.Load(), len(paths), tReady.Sub(t0).Round(time.Millisecond),
		tStormEnd.Sub(tStorm).Round(time.Millisecond), tFinal.Sub(tStormEnd).Round(time.Millisecond), time.Since(t0).Round(time.Millisecond))
}

func podsOf(as []amAlert) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a["labels"].(map[string]string)["pod"]
	}
	return out
}

func TestPoisonMessageIsDeadLetteredAndTheQueueFlows(t *testing.T) {
	srv := bustest.Start(t)
	s := newHASink(t)
	dir := haSetup(t, s, pgtest.NewDatabase(t), "nats:\n  url: "+srv.URL()+"\nbus:\n  replicas: 1\n")
	p := startReplicas(t, dir, 1)[0]

	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ack, err := js.PublishMsg(ctx, signedMsg("poison", []byte("{not json")))
	if err != nil {
		t.Fatalf("publish the poison message: %v", err)
	}
	t.Logf("poison message stored as %s seq %d", ack.Stream, ack.Sequence)

	// The valid group comes after the poison one in the stream.
	code, err := postGroup(p, "after-poison", []amAlert{crashLooping("healthy-after-poison", time.Now().Add(-time.Minute).UTC().Truncate(time.Second))})
	if err != nil || code != 200 {
		t.Fatalf("webhook: %d %v", code, err)
	}
	testwait.Until(t, 20*time.Second, "the valid alert's action to succeed", func() bool {
		acts := haActions(t, p)
		return len(acts) == 1 && acts[0].State == "succeeded"
	})
	if paths, _ := s.snapshot(); paths[restartPrefix+"healthy-after-poison"] != 1 {
		t.Errorf("sink calls = %v, want one restart of healthy-after-poison", paths)
	}
	type auditEntry struct {
		Kind   string         `json:"kind"`
		Actor  string         `json:"actor"`
		Reason string         `json:"reason"`
		Detail map[string]any `json:"detail"`
	}
	var dead []auditEntry
	testwait.Until(t, 20*time.Second, "a dead_letter audit entry", func() bool {
		var l struct {
			Items []auditEntry `json:"items"`
		}
		p.get(t, "/api/v1/audit?limit=1000", &l)
		dead = dead[:0]
		for _, e := range l.Items {
			if e.Kind == "dead_letter" {
				dead = append(dead, e)
			}
		}
		return len(dead) > 0
	})
	if len(dead) != 1 {
		t.Errorf("dead_letter audit entries = %+v, want exactly 1", dead)
	}
	if d := dead[0]; d.Actor != "bus" || d.Reason == "" || fmt.Sprint(d.Detail["bytes"]) != fmt.Sprint(len("{not json")) {
		t.Errorf("dead_letter entry %+v: want actor bus, a reason and the poison message's size", d)
	}
	if n := p.metric(t, "responder_bus_terminated_total"); n != 1 {
		t.Errorf("responder_bus_terminated_total = %v, want 1", n)
	}
	resp, err := http.Get(p.base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("/readyz after the poison message: %d", resp.StatusCode)
	}
	t.Logf("dead letter: %+v", dead[0])
}

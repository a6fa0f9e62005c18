package main_test

// End-to-end test of issue 18's first scenario: two replicas of the built binary on a real
// three-node JetStream cluster with user and password take 5,000 alerts through both webhooks
// while the stream leader is SIGKILLed and, later, a follower is stopped with SIGSTOP for 20 s.
// Every alert answered 200 is processed, no action runs twice, and intake answers 503 (never 200
// and lost) while the bus cannot store.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/responder-sre/responder/bus"
	"github.com/responder-sre/responder/bus/clustertest"
	"github.com/responder-sre/responder/internal/clock"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// clusterAttempt is one POST of a group to a replica's webhook, as the test's Alertmanager saw it.
type clusterAttempt struct {
	group, replica int
	start, end     time.Time
	code           int    // 0: no answer
	answer         string // the body of a non-200 answer, or the error
	retryAfter     string
}

// postGroupAnswer posts one Alertmanager v4 payload like postGroup, and returns the answer's body
// and Retry-After too.
func postGroupAnswer(ctx context.Context, p *proc, groupKey string, alerts []amAlert) (code int, body, retryAfter string, err error) {
	payload, err := json.Marshal(map[string]any{"version": "4", "status": "firing", "receiver": "responder",
		"groupKey": groupKey, "alerts": alerts})
	if err != nil {
		return 0, "", "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+"/webhook/alertmanager", bytes.NewReader(payload))
	if err != nil {
		return 0, "", "", err
	}
	req.Header.Set("Authorization", "Bearer "+hookToken)
	resp, err := webhookClient.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode, strings.TrimSpace(string(b)), resp.Header.Get("Retry-After"), nil
}

// responderConns returns how many client connections named "responder" (the bus's) each running
// node has: which nodes the replicas' bus connections are on.
func responderConns(t *testing.T, c *clustertest.Cluster) map[string]int {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	on := map[string]int{}
	for _, nd := range c.Nodes {
		resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/connz?limit=1024", nd.HTTPPort))
		if err != nil {
			continue // killed or paused
		}
		var connz struct {
			Conns []struct {
				Name string `json:"name"`
			} `json:"connections"`
		}
		err = json.NewDecoder(resp.Body).Decode(&connz)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for _, cn := range connz.Conns {
			if cn.Name == "responder" {
				on[nd.Name]++
			}
		}
	}
	return on
}

func TestClusterTwoReplicasSurviveLeaderKillAndPausedFollower(t *testing.T) {
	const (
		perGroup, groups = 10, 500 // 5,000 alerts, the figure
		alerts           = perGroup * groups
		posters          = 16
		// The posts are paced over ~40 s so that the load spans the leader's kill, its election
		// and the 20 s pause; unpaced, 500 posts are answered in a few seconds.
		pace      = 80 * time.Millisecond
		pauseFor  = 20 * time.Second
		retryWait = 200 * time.Millisecond // Alertmanager's backoff between retries of a group
		giveUp    = 60 * time.Second       // a group not answered 200 within this is reported
	)
	t0 := time.Now()
	c := clustertest.Start(t, 3)
	s := newHASink(t)
	// Configured as a user would: the URL carries no credentials, the password is in a file.
	// Every guard that could refuse 5,000 actions of one rule in a minute is left at (or set to)
	// its default, written out so the test says why nothing is refused: no safety.budgets (none
	// by default), the storm guard off (max_targets 0, the default; each alert is a distinct pod,
	// so it would otherwise count 5,000 targets), no rule cooldown. max_concurrent_actions is
	// raised from 8 so that 5,000 calls to the sink (20-50 ms each) take seconds, not minutes.
	dir := haSetup(t, s, pgtest.NewDatabase(t), fmt.Sprintf(`nats:
  url: %s
  user: %s
  password_file: nats-password
bus:
  replicas: 3
safety:
  max_concurrent_actions: 32
  storm_guard:
    max_targets: 0
`, c.URLWithoutCredentials(), clustertest.User))
	if strings.Contains(c.URLWithoutCredentials(), "@") {
		t.Fatalf("nats.url %q carries credentials", c.URLWithoutCredentials())
	}
	if err := os.WriteFile(filepath.Join(dir, "nats-password"), []byte(c.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := startReplicas(t, dir, 2)
	query := rs[0]
	if info := c.StreamInfo(t, bus.DefaultStream); info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
		t.Fatalf("stream %s: replicas %d, cluster %+v; want 3 replicas (bus.replicas: 3)", bus.DefaultStream, info.Config.Replicas, info.Cluster)
	}
	t.Logf("cluster and 2 replicas ready in %s; the replicas' bus connections are on %v", time.Since(t0).Round(time.Millisecond), responderConns(t, c))

	starts := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	payload := make([][]amAlert, groups)
	for g := range groups {
		for i := range perGroup {
			payload[g] = append(payload[g], crashLooping(fmt.Sprintf("pod-%04d", g*perGroup+i), starts))
		}
	}

	var (
		mu       sync.Mutex
		attempts []clusterAttempt
		accepted = map[string]bool{} // pods in a group answered 200
		unsent   []int               // groups given up on
		answered atomic.Int64        // groups answered 200
	)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() }) // before the replicas and the cluster stop
	work := make(chan int, groups)
	wg.Go(func() {
		defer close(work)
		tick := time.NewTicker(pace)
		defer tick.Stop()
		for g := range groups {
			work <- g
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	})
	tLoad := time.Now()
	for range posters {
		wg.Go(func() {
			for g := range work {
				first := time.Now()
				// Each group alternates between the replicas, and so do its re-sends: a re-send is
				// the same payload (Alertmanager re-sends the group as it was), so the same bus
				// message id, deduplicated by JetStream if an earlier try was stored after all.
				for try := 0; ; try++ {
					a := clusterAttempt{group: g, replica: (g + try) % 2, start: time.Now()}
					code, body, retryAfter, err := postGroupAnswer(ctx, rs[a.replica], fmt.Sprintf("cluster-group-%d", g), payload[g])
					a.end, a.code, a.answer, a.retryAfter = time.Now(), code, body, retryAfter
					if err != nil {
						a.answer = err.Error()
					}
					if code == http.StatusOK {
						a.answer = ""
					}
					mu.Lock()
					attempts = append(attempts, a)
					if code == http.StatusOK {
						for _, al := range payload[g] {
							accepted[al["labels"].(map[string]string)["pod"]] = true
						}
					}
					mu.Unlock()
					if code == http.StatusOK {
						answered.Add(1)
						break
					}
					if ctx.Err() != nil {
						return
					}
					if time.Since(first) > giveUp {
						mu.Lock()
						unsent = append(unsent, g)
						mu.Unlock()
						break
					}
					select {
					case <-time.After(retryWait):
					case <-ctx.Done():
						return
					}
				}
			}
		})
	}

	// Fault 1: SIGKILL of the stream leader once a third of the groups are answered.
	testwait.Until(t, 60*time.Second, "a third of the groups answered 200", func() bool { return answered.Load() >= groups/3 })
	leader := c.StreamLeader(t, bus.DefaultStream)
	connsAtKill := responderConns(t, c)
	answeredAtKill := answered.Load()
	c.Kill(leader)
	tKill := time.Now()
	newLeader := c.StreamLeader(t, bus.DefaultStream, leader)
	tElected := time.Now()
	if newLeader == leader {
		t.Fatalf("stream leader after the kill of %s: %s, want another node", leader.Name, newLeader.Name)
	}
	// Its supervisor restarts the killed node, so the pause below stops one follower of three (a
	// quorum stays); with the killed node still down, pausing the last follower would stop the
	// whole stream instead.
	c.Restart(leader)
	tRestarted := time.Now()
	t.Logf("killed stream leader %s %s into the load (%d of %d groups answered; bus connections %v); new leader %s after %s; %s restarted after %s",
		leader.Name, tKill.Sub(tLoad).Round(time.Millisecond), answeredAtKill, groups, connsAtKill, newLeader.Name,
		tElected.Sub(tKill).Round(time.Millisecond), leader.Name, tRestarted.Sub(tKill).Round(time.Millisecond))

	// Fault 2: SIGSTOP of a follower for 20 s once two thirds are answered: the follower the most
	// replicas' bus connections are on, so a paused connection is part of the test.
	testwait.Until(t, 60*time.Second, "two thirds of the groups answered 200", func() bool { return answered.Load() >= 2*groups/3 })
	current := c.StreamLeader(t, bus.DefaultStream)
	conns := responderConns(t, c)
	var paused *clustertest.Node
	for _, nd := range c.Nodes {
		if nd != current && (paused == nil || conns[nd.Name] > conns[paused.Name]) {
			paused = nd
		}
	}
	answeredAtPause := answered.Load()
	c.Pause(paused)
	tPause := time.Now()
	resumed := false
	t.Cleanup(func() { // a test stopped by a failure above resumes the node before the replicas stop
		if !resumed {
			c.Resume(paused)
		}
	})
	// The length of the fault, not a wait for a condition: what happened meanwhile is checked
	// from the answers recorded, below.
	_ = clock.Sleep(t.Context(), pauseFor)
	c.Resume(paused)
	resumed = true
	tResume := time.Now()
	t.Logf("paused follower %s (stream leader %s, bus connections %v) %s into the load, %d of %d groups answered, for %s",
		paused.Name, current.Name, conns, tPause.Sub(tLoad).Round(time.Millisecond), answeredAtPause, groups, tResume.Sub(tPause).Round(time.Millisecond))

	testwait.Until(t, 90*time.Second, "every group answered 200 or given up", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return answered.Load()+int64(len(unsent)) == groups
	})
	mu.Lock()
	all := slices.Clone(attempts)
	gaveUp := slices.Clone(unsent)
	mu.Unlock()
	var tLoadEnd time.Time // the last 200
	for _, a := range all {
		if a.code == http.StatusOK && a.end.After(tLoadEnd) {
			tLoadEnd = a.end
		}
	}
	called, _ := s.snapshot()
	t.Logf("every group answered: %d of %d pods called at the sink; %s", len(called), alerts, clustertest.DescribeConsumer(c.ConsumerInfo(t, bus.DefaultStream, bus.DefaultDurable)))

	// Every answer is 200 or 503 with a reason and Retry-After; count them by window.
	codes := map[string]int{}
	reasons := map[string]int{}
	// By window of the answer (the phases of the test) and replica: "200", "503", "slow" (5 s or
	// more: a publish waiting on a node that cannot answer).
	windows := map[string]map[string]int{}
	firstOKInPause := map[int]time.Time{} // replica → first 200 of a post sent while paused
	var resends int
	var slowest time.Duration
	var firstOKAfterKill, last503AfterKill time.Time
	for _, a := range all {
		key := fmt.Sprint(a.code)
		if a.code == 0 {
			key = "no answer"
		}
		codes[key]++
		took := a.end.Sub(a.start)
		slowest = max(slowest, took)
		w := "before the kill"
		switch {
		case !a.end.Before(tResume):
			w = "after the resume"
		case !a.end.Before(tPause):
			w = "paused"
		case !a.end.Before(tRestarted):
			w = "restart to pause"
		case !a.end.Before(tKill):
			w = "kill"
		}
		if a.code == http.StatusOK && !a.start.Before(tPause) && a.start.Before(tResume) {
			if f, ok := firstOKInPause[a.replica]; !ok || a.end.Before(f) {
				firstOKInPause[a.replica] = a.end
			}
		}
		if windows[w] == nil {
			windows[w] = map[string]int{}
		}
		windows[w][fmt.Sprintf("replica %d %s", a.replica, key)]++
		if took >= 5*time.Second {
			windows[w][fmt.Sprintf("replica %d slow", a.replica)]++
		}
		if a.code == http.StatusOK && a.start.After(tKill) && (firstOKAfterKill.IsZero() || a.end.Before(firstOKAfterKill)) {
			firstOKAfterKill = a.end
		}
		if a.code == http.StatusServiceUnavailable && w == "kill" {
			last503AfterKill = a.end
		}
		switch a.code {
		case http.StatusOK:
		case http.StatusServiceUnavailable:
			var e struct {
				Error string `json:"error"`
			}
			_ = json.Unmarshal([]byte(a.answer), &e)
			if !strings.HasPrefix(e.Error, "alerts not stored, retry later: ") || a.retryAfter == "" {
				t.Errorf("group %d to replica %d answered 503 with %q (Retry-After %q), want the reason \"alerts not stored, retry later: ...\" and a Retry-After",
					a.group, a.replica, a.answer, a.retryAfter)
			}
			reasons[strings.TrimPrefix(e.Error, "alerts not stored, retry later: ")]++
		default:
			t.Errorf("group %d to replica %d at %s: answer %d %q, want 200 or 503", a.group, a.replica,
				a.start.Sub(tLoad).Round(time.Millisecond), a.code, a.answer)
		}
	}
	resends = len(all) - groups
	if len(gaveUp) > 0 {
		slices.Sort(gaveUp)
		t.Errorf("%d groups never answered 200 within %s of retries: %v", len(gaveUp), giveUp, gaveUp)
	}
	kill503 := windows["kill"]["replica 0 503"] + windows["kill"]["replica 1 503"]
	if kill503 == 0 {
		t.Errorf("no 503 between the kill of the stream leader %s and its restart (%s): the kill did not land mid-load (answers then %v)",
			leader.Name, tRestarted.Sub(tKill).Round(time.Millisecond), windows["kill"])
	}
	// A paused follower leaves a quorum, so intake goes on: a replica whose bus connection is on
	// the paused node answers 503 until the client's pings time out (about 6 s), then reconnects
	// to another node. Each replica answers 200 to a post sent during the pause before it ends.
	for r := range rs {
		if f, ok := firstOKInPause[r]; !ok || !f.Before(tResume) {
			t.Errorf("replica %d: no 200 for a post sent while %s was paused (%s) before it resumed; bus connections at the pause %v, answers then %v",
				r, paused.Name, pauseFor, conns, windows["paused"])
		}
	}
	firstOK := map[string]string{}
	for r := range rs {
		if f, ok := firstOKInPause[r]; ok {
			firstOK[fmt.Sprintf("replica %d", r)] = f.Sub(tPause).Round(time.Millisecond).String()
		} else {
			firstOK[fmt.Sprintf("replica %d", r)] = "none"
		}
	}
	t.Logf("%d posts of %d groups (%d alerts), %d re-sends; answers %v (slowest %s); load %s",
		len(all), groups, alerts, resends, codes, slowest.Round(time.Millisecond), tLoadEnd.Sub(tLoad).Round(time.Millisecond))
	t.Logf("kill of %s: %d 503s, the last %s after the kill; first 200 of a post sent after the kill %s after it; answers by replica %v",
		leader.Name, kill503, last503AfterKill.Sub(tKill).Round(time.Millisecond), firstOKAfterKill.Sub(tKill).Round(time.Millisecond), windows["kill"])
	t.Logf("pause of %s (bus connections %v): answers by replica while paused %v, after the resume %v; first 200 of a post sent while paused, after the pause began: %v",
		paused.Name, conns, windows["paused"], windows["after the resume"], firstOK)
	t.Logf("answers before the kill %v, between the restart and the pause %v", windows["before the kill"], windows["restart to pause"])
	t.Logf("503 reasons: %v", reasons)
	if len(accepted) != alerts {
		t.Fatalf("%d of %d pods answered 200", len(accepted), alerts)
	}

	// Every accepted pod's action reaches the sink and ends succeeded.
	testwait.UntilDetail(t, 60*time.Second, "a sink call for every accepted pod", func() (bool, string) {
		paths, _ := s.snapshot()
		if len(paths) >= len(accepted) {
			return true, ""
		}
		return false, fmt.Sprintf("%d of %d pods called; %s", len(paths), len(accepted), clustertest.DescribeConsumer(c.ConsumerInfo(t, bus.DefaultStream, bus.DefaultDurable)))
	})
	var acts []ctlAction
	testwait.UntilDetail(t, 60*time.Second, "every action succeeded", func() (bool, string) {
		acts = haActions(t, query)
		states := map[string]int{}
		for _, a := range acts {
			states[a.State]++
		}
		return states["succeeded"] >= len(accepted), fmt.Sprintf("%d actions: %v", len(acts), states)
	})
	tDrained := time.Now()

	paths, keys := s.snapshot()
	byPod := map[string][]ctlAction{}
	for _, a := range acts {
		byPod[actionPod(a)] = append(byPod[actionPod(a)], a)
		if a.State != "succeeded" {
			t.Errorf("action %d (%s): %s/%s, want succeeded", a.ID, actionPod(a), a.State, a.Reason)
		}
		if n := keys[fmt.Sprintf("responder-action-%d", a.ID)]; n != 1 {
			t.Errorf("action %d (%s): Idempotency-Key seen %d times at the sink, want 1", a.ID, actionPod(a), n)
		}
	}
	for pod := range accepted {
		if n := len(byPod[pod]); n != 1 {
			t.Errorf("pod %s answered 200 has %d actions, want exactly 1", pod, n)
		}
		if n := paths[restartPrefix+pod]; n != 1 {
			t.Errorf("pod %s answered 200: %d calls at the sink, want exactly 1", pod, n)
		}
	}
	if len(byPod) != len(accepted) || len(paths) != len(accepted) || len(keys) != len(accepted) {
		t.Errorf("%d pods with actions, %d sink paths, %d Idempotency-Keys; want %d each", len(byPod), len(paths), len(keys), len(accepted))
	}
	incs := haIncidents(t, query)
	perPod := map[string]int{}
	for _, in := range incs {
		perPod[in.Labels["pod"]]++
	}
	for pod := range accepted {
		if perPod[pod] != 1 {
			t.Errorf("pod %s answered 200 has %d incidents, want 1", pod, perPod[pod])
		}
	}
	if len(incs) != len(accepted) {
		t.Errorf("%d incidents, want %d (one per pod)", len(incs), len(accepted))
	}

	// Nothing dead-lettered.
	redelivered := map[string]float64{}
	for i, p := range rs {
		if n := p.metric(t, "responder_bus_terminated_total"); n != 0 {
			t.Errorf("replica %d: responder_bus_terminated_total = %v, want 0", i, n)
		}
		redelivered[fmt.Sprint(i)] = p.metric(t, "responder_bus_redeliveries_total")
	}
	var dl struct {
		Items []json.RawMessage `json:"items"`
	}
	query.get(t, "/api/v1/dead-letters", &dl)
	if len(dl.Items) != 0 {
		t.Errorf("%d dead letters, want none: %s", len(dl.Items), dl.Items[0])
	}

	info := c.StreamInfo(t, bus.DefaultStream)
	t.Logf("stream leader %s killed, new leader %s seen %s after the kill (StreamLeader polls); follower %s paused %s; %d alerts accepted, %d actions succeeded, %d sink calls (%d paths); redeliveries per replica %v; stream holds %d messages; drained %s after the last 200; %.0f alerts/s end to end (first post to every action listed succeeded); total %s",
		leader.Name, newLeader.Name, tElected.Sub(tKill).Round(time.Millisecond), paused.Name, pauseFor, len(accepted), len(acts),
		s.total.Load(), len(paths), redelivered, info.State.Msgs, tDrained.Sub(tLoadEnd).Round(time.Millisecond),
		float64(alerts)/tDrained.Sub(tLoad).Seconds(), time.Since(t0).Round(time.Millisecond))
}

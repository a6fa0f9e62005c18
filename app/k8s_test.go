package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/responder-sre/responder/handlers/k8s"
	"github.com/responder-sre/responder/handlers/k8s/k8stest"
	"github.com/responder-sre/responder/internal/testwait"
)

// The tests in this file run responder end to end against a real control plane (k8stest). Each
// starts its own cluster with k8stest.Start (a few seconds): this package's TestMain belongs to
// pgtest, so nothing would stop a k8stest.Shared cluster.

// kubePayload builds an Alertmanager v4 webhook body with one firing KubePodCrashLooping alert per
// pod of namespace ns.
func kubePayload(ns string, starts time.Time, pods ...string) []byte {
	type am struct {
		Status      string            `json:"status"`
		Labels      map[string]string `json:"labels"`
		Annotations map[string]string `json:"annotations"`
		StartsAt    time.Time         `json:"startsAt"`
		EndsAt      time.Time         `json:"endsAt"`
	}
	as := make([]am, 0, len(pods))
	for _, p := range pods {
		as = append(as, am{Status: "firing", StartsAt: starts,
			Labels:      map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns, "pod": p, "severity": "critical"},
			Annotations: map[string]string{"summary": "pod " + p + " is crash looping"}})
	}
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": `{}:{alertname="KubePodCrashLooping", namespace="` + ns + `"}`,
		"truncatedAlerts": 0, "status": "firing", "receiver": "responder",
		"groupLabels":  map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns},
		"commonLabels": map[string]string{"alertname": "KubePodCrashLooping", "namespace": ns}, "commonAnnotations": map[string]string{},
		"externalURL": "http://alertmanager:9093", "alerts": as})
	return b
}

// kubeRule is a rule restarting the crash-looping pods of namespace ns, paging through the sink
// when that fails or a guard refuses.
func kubeRule(s *sink, name, ns, verifyTimeout string) string {
	return fmt.Sprintf(`
  - name: %[1]s
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing" && alert.labels.namespace == %[2]q
    actions:
      - handler: k8s.restart_pod
        params: {namespace: "{{ alert.labels.namespace }}", pod: "{{ alert.labels.pod }}", verify_timeout: %[3]s}
    escalate:
      - handler: http.request
        params: {url: "http://%[4]s/page/{{ alert.labels.namespace }}/{{ alert.labels.pod }}", class: notify}
`, name, ns, verifyTimeout, s.HostPort())
}

// kubeConfig is handlers.kubernetes, indented to continue the handlers section writeConfig ends
// its config with.
func kubeConfig(kubeconfig string, namespaces ...string) string {
	q := make([]string, len(namespaces))
	for i, ns := range namespaces {
		q[i] = strconv.Quote(ns)
	}
	return fmt.Sprintf("  kubernetes: {kubeconfig: %q, namespaces: [%s]}\n", kubeconfig, strings.Join(q, ", "))
}

// kdeploy creates a Deployment of replicas pods labelled app=name (on nodes labelled pool when
// pool is not empty) and, when minAvailable > 0, a PodDisruptionBudget for it.
func kdeploy(ctx context.Context, cs kubernetes.Interface, ns, name string, replicas int32, minAvailable int, pool string) error {
	labels := map[string]string{"app": name}
	spec := corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "example.invalid/" + name + ":1"}}}
	if pool != "" {
		spec.NodeSelector = map[string]string{"responder-test/pool": pool}
	}
	if _, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{Replicas: &replicas, Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec}},
	}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if minAvailable == 0 {
		return nil
	}
	v := intstr.FromInt(minAvailable)
	_, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &v, Selector: &metav1.LabelSelector{MatchLabels: labels}},
	}, metav1.CreateOptions{})
	return err
}

func podIsReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyByApp lists the pods of ns and returns, per app label, the Ready pods' names (sorted) and
// every pod's UID.
func readyByApp(ctx context.Context, cs kubernetes.Interface, ns string) (map[string][]string, map[types.UID]bool, error) {
	list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, nil, err
	}
	ready, uids := map[string][]string{}, map[types.UID]bool{}
	for i := range list.Items {
		p := &list.Items[i]
		uids[p.UID] = true
		if podIsReady(p) {
			ready[p.Labels["app"]] = append(ready[p.Labels["app"]], p.Name)
		}
	}
	for _, ps := range ready {
		slices.Sort(ps)
	}
	return ready, uids, nil
}

// waitKubeReady waits until every Deployment of ns has all its replicas Ready and up to date.
func waitKubeReady(t *testing.T, cs kubernetes.Interface, ns string, d time.Duration) {
	t.Helper()
	testwait.Until(t, d, "deployments of "+ns+" ready", func() bool {
		list, err := cs.AppsV1().Deployments(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil || len(list.Items) == 0 {
			return false
		}
		for _, d := range list.Items {
			if d.Status.ObservedGeneration < d.Generation || d.Status.ReadyReplicas != *d.Spec.Replicas ||
				d.Status.UpdatedReplicas != *d.Spec.Replicas || d.Status.Replicas != *d.Spec.Replicas {
				return false
			}
		}
		return true
	})
}

// restartEvents counts the ResponderRestart Events responder recorded in ns, per Deployment.
func restartEvents(t *testing.T, cs kubernetes.Interface, ns string) map[string]int {
	t.Helper()
	list, err := cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	must(t, err)
	out := map[string]int{}
	for _, e := range list.Items {
		if e.Reason == k8s.ReasonRestart && e.Source.Component == k8s.Component {
			out[e.InvolvedObject.Name]++
		}
	}
	return out
}

// TestKubernetesRestartPodEndToEnd: an Alertmanager KubePodCrashLooping payload (sent three times,
// as Alertmanager re-sends) → the rule → k8s.restart_pod → the pod is evicted and replaced →
// the action succeeded after verify; exactly one eviction.
// kubeWeb is a test control plane with Deployment web (3 Ready pods, a PDB of 2) in namespace
// ns, and a responder whose restart-crashlooping-pod rule restarts its pods: the Ready pods by
// app and their uids, before anything happened.
type kubeWeb struct {
	cs     kubernetes.Interface
	ns     string
	before map[string][]string
	uids   map[types.UID]bool
	f      *fixture
}

func startKubeWeb(t *testing.T, ctx context.Context) kubeWeb {
	t.Helper()
	c := k8stest.Start(t)
	k := kubeWeb{cs: c.Clientset(t), ns: c.Namespace(t)}
	must(t, kdeploy(ctx, k.cs, k.ns, "web", 3, 2, ""))
	waitKubeReady(t, k.cs, k.ns, time.Minute)
	var err error
	k.before, k.uids, err = readyByApp(ctx, k.cs, k.ns)
	must(t, err)
	k.f = startApp(t, fixtureOpts{
		extra: kubeConfig(c.Kubeconfig, k.ns),
		rules: func(s *sink) string { return "rules:" + kubeRule(s, "restart-crashlooping-pod", k.ns, "60s") },
	})
	return k
}

func TestKubernetesRestartPodEndToEnd(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	k := startKubeWeb(t, ctx)
	cs, ns, uids, f := k.cs, k.ns, k.uids, k.f
	victim := k.before["web"][0]
	begin := time.Now()
	body := kubePayload(ns, time.Now().UTC().Truncate(time.Second), victim)
	for range 3 {
		if code := f.post(body); code != 200 {
			t.Fatalf("webhook answered %d", code)
		}
	}
	testwait.Until(t, time.Minute, "the restart to succeed", func() bool {
		items := f.actions("")
		for _, it := range items {
			if st := it["state"]; st != "succeeded" && st != "planned" && st != "running" {
				t.Fatalf("action %v", it)
			}
		}
		return countState(items, "succeeded") == 1
	})
	t.Logf("alert → pod replaced → succeeded in %s", time.Since(begin).Round(time.Millisecond))
	items := f.actions("")
	if len(items) != 1 || items[0]["handler"] != k8s.RestartPodName || items[0]["target"] != ns+"/Deployment/web" {
		t.Fatalf("actions = %v, want one k8s.restart_pod on %s/Deployment/web", items, ns)
	}
	if res, _ := items[0]["result"].(string); !strings.Contains(res, "evicted pod "+victim) || !strings.Contains(res, "recovered") {
		t.Fatalf("result %q does not say it evicted %s and the workload recovered", res, victim)
	}
	after, afterUIDs, err := readyByApp(ctx, cs, ns)
	must(t, err)
	if len(after["web"]) != 3 || slices.Contains(after["web"], victim) {
		t.Fatalf("ready pods after = %v, want 3 without %s", after["web"], victim)
	}
	replaced := 0
	for uid := range uids {
		if !afterUIDs[uid] {
			replaced++
		}
	}
	if ev := restartEvents(t, cs, ns); replaced != 1 || ev["web"] != 1 {
		t.Fatalf("%d pods replaced and %d restart events, want exactly one eviction", replaced, ev["web"])
	}
	if n := len(f.sink.Calls()); n != 0 {
		t.Fatalf("%d pages for a restart that worked", n)
	}
}

// stormAlerts is how many alerts the storm test posts: 10,000, 3,000 with -short;
// RESPONDER_STORM_ALERTS overrides.
func stormAlerts(t *testing.T) int {
	if s := os.Getenv("RESPONDER_STORM_ALERTS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 500 {
			t.Fatalf("RESPONDER_STORM_ALERTS=%q: want an integer of at least 500", s)
		}
		return n
	}
	if testing.Short() {
		return 3000
	}
	return 10_000
}

// TestKubernetesStorm is issue 6's storm test: 20 Deployments × 25 pods, each with a PDB
// minAvailable 20, and alert storms with duplicates posted like Alertmanager (groups of 50,
// re-sent). The guards are configured as a careful team would:
//
//   - namespace A (6 Deployments): 60 crash-looping pods, all 25 of one Deployment; the per
//     namespace budget (15 per 10m) stops the restarts, and the storm guard's
//     max_workload_fraction (0.3: 7 of 25) refuses the Deployment whose every pod alerts;
//   - namespace B (12 Deployments): every pod alerts; the storm guard's max_targets (10) trips;
//   - namespace C (5 small Deployments whose replacement pods can never be scheduled): three
//     restarts fail not_recovered, the breaker of (k8s.restart_pod, C) opens, and the next alerts
//     are skipped breaker_open and page;
//   - namespace D (2 Deployments, 14 crash-looping pods, within every bound): POST /api/v1/pause
//     mid-storm stops every restart not yet started.
//
// Throughout, a sampler watches every Deployment's Ready pods: none drops below its PDB floor.
// At the end the store and the cluster agree on what happened, and every Deployment outside C is
// back to 25 Ready pods.
//
// -short runs it with 12 pods per Deployment (and the bounds scaled: floor 9, 3 per workload,
// budget 7) and 3,000 alerts.
func TestKubernetesStorm(t *testing.T) {
	total := stormAlerts(t)
	wall := time.Now()
	c := k8stest.Start(t)
	cs := c.Clientset(t)
	nsA, nsB, nsC, nsD := c.Namespace(t), c.Namespace(t), c.Namespace(t), c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()

	const (
		maxTargets   = 10
		fraction     = 0.3
		breakerFails = 3
	)
	replicas := int32(25)
	if testing.Short() {
		replicas = 12
	}
	var (
		floor       = int(replicas) * 4 / 5                   // every PDB's minAvailable
		perWorkload = max(1, int(fraction*float64(replicas))) // what max_workload_fraction allows
		budgetMax   = 2*perWorkload + 1                       // per namespace: below A's demand, above D's
	)
	// The breaker's Deployments run on a node labelled pool=breaker; the label is removed once
	// they are Ready, so their replacements stay Pending.
	node, err := cs.CoreV1().Nodes().Get(ctx, "kwok-node-0", metav1.GetOptions{})
	must(t, err)
	node.Labels["responder-test/pool"] = "breaker"
	_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	must(t, err)

	type dep struct {
		ns, name string
		replicas int32
		min      int
		pool     string
	}
	var deps []dep
	for i := range 6 {
		deps = append(deps, dep{nsA, fmt.Sprint("a", i), replicas, floor, ""})
	}
	for i := range 12 {
		deps = append(deps, dep{nsB, fmt.Sprint("b", i), replicas, floor, ""})
	}
	for i := range 2 {
		deps = append(deps, dep{nsD, fmt.Sprint("d", i), replicas, floor, ""})
	}
	for i := range 5 {
		deps = append(deps, dep{nsC, fmt.Sprint("c", i), 2, 1, "breaker"})
	}
	setup := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(deps))
	for _, d := range deps {
		wg.Go(func() { errs <- kdeploy(ctx, cs, d.ns, d.name, d.replicas, d.min, d.pool) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	for _, ns := range []string{nsA, nsB, nsC, nsD} {
		waitKubeReady(t, cs, ns, 3*time.Minute)
	}
	testwait.Until(t, time.Minute, "every PDB observed", func() bool {
		for _, ns := range []string{nsA, nsB, nsC, nsD} {
			l, err := cs.PolicyV1().PodDisruptionBudgets(ns).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false
			}
			for _, p := range l.Items {
				if p.Status.ObservedGeneration != p.Generation || p.Status.DisruptionsAllowed < 1 {
					return false
				}
			}
		}
		return true
	})
	node, err = cs.CoreV1().Nodes().Get(ctx, "kwok-node-0", metav1.GetOptions{})
	must(t, err)
	delete(node.Labels, "responder-test/pool")
	_, err = cs.CoreV1().Nodes().Update(ctx, node, metav1.UpdateOptions{})
	must(t, err)
	t.Logf("setup: 20 Deployments × %d pods + 5 × 2, PDBs (minAvailable %d), all Ready in %s", replicas, floor, time.Since(setup).Round(time.Millisecond))

	pods := map[string]map[string][]string{} // ns → app → ready pods
	origUIDs := map[types.UID]bool{}
	for _, ns := range []string{nsA, nsB, nsC, nsD} {
		r, uids, err := readyByApp(ctx, cs, ns)
		must(t, err)
		pods[ns] = r
		for u := range uids {
			origUIDs[u] = true
		}
	}

	// The sampler: the fewest Ready pods each Deployment of A, B and D had, every 100ms.
	minReady := map[string]int{}
	var minMu sync.Mutex
	sampleCtx, stopSampling := context.WithCancel(ctx)
	samples := 0
	var sampler sync.WaitGroup
	sampler.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			for _, ns := range []string{nsA, nsB, nsD} {
				r, _, err := readyByApp(sampleCtx, cs, ns)
				if err != nil {
					continue
				}
				minMu.Lock()
				for _, d := range deps {
					if d.ns != ns {
						continue
					}
					k := ns + "/" + d.name
					if n, ok := minReady[k]; !ok || len(r[d.name]) < n {
						minReady[k] = len(r[d.name])
					}
				}
				minMu.Unlock()
			}
			samples++
			select {
			case <-sampleCtx.Done():
				return
			case <-tick.C:
			}
		}
	})

	f := startApp(t, fixtureOpts{
		extra: fmt.Sprintf(`%ssafety:
  max_concurrent_actions: 16
  budgets:
    - {name: k8s-per-namespace, match: "k8s.*", per: namespace, max: %d, window: 10m}
  storm_guard: {window: 10m, max_targets: %d, max_workload_fraction: %g}
  breaker: {failures: %d, open_for: 10m}
`, kubeConfig(c.Kubeconfig, nsA, nsB, nsC, nsD), budgetMax, maxTargets, fraction, breakerFails),
		rules: func(s *sink) string {
			return "rules:" + kubeRule(s, "restart-a", nsA, "60s") + kubeRule(s, "restart-b", nsB, "60s") +
				kubeRule(s, "restart-c", nsC, "3s") + kubeRule(s, "restart-d", nsD, "60s")
		},
	})
	db := f.app.Store().Pool()
	starts := time.Now().UTC().Truncate(time.Second)
	rng := rand.New(rand.NewPCG(6, 6))
	posted := 0
	// storm posts n alerts drawn from crashing (each at least once, the rest duplicates) in
	// groups of 50 per namespace, from 4 senders; every fifth group is sent twice (a re-send).
	storm := func(n int, crashing map[string][]string) {
		t.Helper()
		var all [][2]string
		for ns, ps := range crashing {
			for _, p := range ps {
				all = append(all, [2]string{ns, p})
			}
		}
		slices.SortFunc(all, func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) })
		alerts := slices.Clone(all)
		for len(alerts) < n {
			alerts = append(alerts, all[rng.IntN(len(all))])
		}
		rng.Shuffle(len(alerts), func(i, j int) { alerts[i], alerts[j] = alerts[j], alerts[i] })
		byNS := map[string][]string{}
		for _, a := range alerts {
			byNS[a[0]] = append(byNS[a[0]], a[1])
		}
		var bodies [][]byte
		for ns, ps := range byNS {
			for i := 0; i < len(ps); i += 50 {
				b := kubePayload(ns, starts, ps[i:min(i+50, len(ps))]...)
				bodies = append(bodies, b)
				if len(bodies)%5 == 0 {
					bodies = append(bodies, b)
				}
			}
			posted += len(ps)
		}
		rng.Shuffle(len(bodies), func(i, j int) { bodies[i], bodies[j] = bodies[j], bodies[i] })
		work := make(chan []byte)
		var senders sync.WaitGroup
		for range 4 {
			senders.Go(func() {
				for b := range work {
					if code := f.post(b); code != 200 {
						t.Errorf("webhook answered %d", code)
					}
				}
			})
		}
		for _, b := range bodies {
			work <- b
		}
		close(work)
		senders.Wait()
	}
	count := func(q string, args ...any) int {
		t.Helper()
		var n int
		must(t, db.QueryRow(ctx, q, args...).Scan(&n))
		return n
	}
	settled := func(what string, rules ...string) {
		t.Helper()
		testwait.Until(t, 2*time.Minute, what, func() bool {
			return metricValue(t, f, "responder_bus_pending_messages") == 0 &&
				count(`SELECT count(*) FROM actions WHERE rule = ANY($1) AND state IN ('planned', 'approved', 'running')`, rules) == 0
		})
	}

	// Phase 1: A and B.
	phase := time.Now()
	crashA := map[string][]string{nsA: slices.Clone(pods[nsA]["a0"])}
	for i := 1; i < 6; i++ {
		crashA[nsA] = append(crashA[nsA], pods[nsA][fmt.Sprint("a", i)][:perWorkload]...)
	}
	var crashB []string
	for i := range 12 {
		crashB = append(crashB, pods[nsB][fmt.Sprint("b", i)]...)
	}
	phase1 := total * 6 / 10
	storm(phase1, map[string][]string{nsA: crashA[nsA], nsB: crashB})
	t.Logf("phase 1: %d alerts (%d distinct) posted in %s", phase1, len(crashA[nsA])+len(crashB), time.Since(phase).Round(time.Millisecond))
	settled("phase 1 to settle", "restart-a", "restart-b")
	t.Logf("phase 1 settled after %s", time.Since(phase).Round(time.Millisecond))

	// Phase 2: the breaker. Three restarts in C fail not_recovered (their replacements cannot be
	// scheduled), the breaker opens; two more alerts are refused and page.
	phase = time.Now()
	first := []string{pods[nsC]["c0"][0], pods[nsC]["c1"][0], pods[nsC]["c2"][0]}
	if code := f.post(kubePayload(nsC, starts, first...)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	posted += len(first)
	testwait.Until(t, time.Minute, "3 not_recovered in "+nsC, func() bool {
		return count(`SELECT count(*) FROM actions WHERE rule = 'restart-c' AND state = 'failed' AND reason = 'not_recovered'`) == breakerFails
	})
	var bstate string
	must(t, db.QueryRow(ctx, `SELECT state FROM breakers WHERE handler = $1 AND scope = $2`, k8s.RestartPodName, nsC).Scan(&bstate))
	if bstate != "open" {
		t.Fatalf("breaker (k8s.restart_pod, %s) is %q after %d not_recovered, want open", nsC, bstate, breakerFails)
	}
	late := []string{pods[nsC]["c3"][0], pods[nsC]["c4"][0]}
	if code := f.post(kubePayload(nsC, starts, late...)); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	posted += len(late)
	settled("phase 2 to settle", "restart-c")
	testwait.Until(t, 30*time.Second, "the pages of the breaker's refusals", func() bool {
		n := 0
		for _, call := range f.sink.Calls() {
			for _, p := range late {
				if call.Path == "/page/"+nsC+"/"+p {
					n++
				}
			}
		}
		return n == len(late)
	})
	t.Logf("phase 2 (breaker) settled after %s", time.Since(phase).Round(time.Millisecond))

	// Phase 3: D's restarts start; once two succeeded, pause mid-storm (re-sends of A and B keep
	// coming); nothing starts after the pause.
	phase = time.Now()
	crashD := append(slices.Clone(pods[nsD]["d0"][:perWorkload]), pods[nsD]["d1"][:perWorkload]...)
	storm(len(crashD), map[string][]string{nsD: crashD})
	testwait.Until(t, time.Minute, "2 restarts in "+nsD, func() bool {
		return count(`SELECT count(*) FROM actions WHERE rule = 'restart-d' AND state = 'succeeded'`) >= 2
	})
	if code, b := f.do("POST", "/api/v1/pause", adminToken, []byte(`{"reason":"storm","by":"oncall"}`)); code != 200 {
		t.Fatalf("pause: %d %s", code, b)
	}
	rest := total - posted
	storm(rest, map[string][]string{nsA: crashA[nsA], nsB: crashB, nsD: crashD})
	settled("phase 3 to settle", "restart-a", "restart-b", "restart-c", "restart-d")
	t.Logf("phase 3 (pause): %d more alerts, settled after %s", rest, time.Since(phase).Round(time.Millisecond))
	stopSampling()
	sampler.Wait()

	// --- The store. ---
	type row struct {
		rule, state, reason string
		n                   int
	}
	var table []row
	rows, err := db.Query(ctx, `SELECT rule, state, reason, count(*) FROM actions WHERE phase = 'actions' GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`)
	must(t, err)
	for rows.Next() {
		var r row
		must(t, rows.Scan(&r.rule, &r.state, &r.reason, &r.n))
		table = append(table, r)
	}
	must(t, rows.Err())
	outcome := map[string]int{}
	for _, r := range table {
		outcome[r.rule+" "+r.state+" "+r.reason] = r.n
		t.Logf("actions %-9s %-9s %-17s %4d", r.rule, r.state, r.reason, r.n)
	}
	escalations := count(`SELECT count(*) FROM actions WHERE phase = 'escalate'`)
	t.Logf("escalations (pages) %d; sink calls %d; incidents %d (suppressed %d)", escalations, len(f.sink.Calls()),
		count(`SELECT count(*) FROM incidents`), count(`SELECT count(*) FROM incidents WHERE state = 'suppressed'`))

	// Every alert became one incident and one restart_pod action: duplicates did nothing.
	distinct := len(crashA[nsA]) + len(crashB) + len(first) + len(late) + len(crashD)
	if n := count(`SELECT count(*) FROM actions WHERE phase = 'actions'`); n != distinct {
		t.Errorf("%d actions for %d distinct crash-looping pods (and %d alerts)", n, distinct, posted)
	}
	// Budgets: per namespace, never more than 15 started (nor spent).
	for _, ns := range []string{nsA, nsB, nsC, nsD} {
		started := count(`SELECT count(*) FROM actions WHERE scope = $1 AND phase = 'actions' AND started_at IS NOT NULL`, ns)
		spent := count(`SELECT count(*) FROM budget_spend WHERE budget = 'k8s-per-namespace' AND key = $1`, ns)
		if started > budgetMax || spent > budgetMax || spent != started {
			t.Errorf("namespace %s: %d restarts started, %d budget spent; the budget allows %d", ns, started, spent, budgetMax)
		}
	}
	if outcome["restart-a skipped budget_exhausted"] == 0 || outcome["restart-a succeeded "] != budgetMax {
		t.Errorf("restart-a: %d succeeded, %d budget_exhausted; want the budget (%d) spent and then refusals",
			outcome["restart-a succeeded "], outcome["restart-a skipped budget_exhausted"], budgetMax)
	}
	// The storm guard: per workload, never more than 7 of 25 started; in A it refused the
	// Deployment whose every pod alerted; in B it tripped on the number of targets.
	rows, err = db.Query(ctx, `SELECT target, count(*) FROM actions WHERE phase = 'actions' AND started_at IS NOT NULL GROUP BY 1`)
	must(t, err)
	for rows.Next() {
		var target string
		var n int
		must(t, rows.Scan(&target, &n))
		if n > perWorkload {
			t.Errorf("%d restarts started on %s, above max_workload_fraction (%d)", n, target, perWorkload)
		}
	}
	must(t, rows.Err())
	if n := count(`SELECT count(*) FROM actions WHERE rule = 'restart-a' AND target = $1 AND reason = 'storm_blocked' AND error LIKE '%members of%'`, nsA+"/Deployment/a0"); n == 0 {
		t.Errorf("restart-a: no storm_blocked by max_workload_fraction on a0")
	}
	if n := count(`SELECT count(*) FROM actions WHERE rule = 'restart-a' AND reason = 'storm_blocked' AND error LIKE '%targets within%'`); n != 0 {
		t.Errorf("restart-a: %d actions blocked for too many targets; it touches 6 of max_targets %d", n, maxTargets)
	}
	if n := count(`SELECT count(*) FROM actions WHERE rule = 'restart-b' AND reason = 'storm_blocked' AND error LIKE '%targets within%'`); n == 0 {
		t.Errorf("restart-b: the storm guard did not trip on 12 targets")
	}
	if n := count(`SELECT count(*) FROM incidents i JOIN actions a ON a.incident_id = i.id WHERE a.reason = 'storm_blocked' AND i.state <> 'suppressed'`); n != 0 {
		t.Errorf("%d storm-blocked incidents not suppressed", n)
	}
	// A storm escalates once per rule and window, not once per target.
	for _, rule := range []string{"restart-a", "restart-b"} {
		n := count(`SELECT count(*) FROM actions e JOIN actions a ON a.incident_id = e.incident_id AND a.phase = 'actions'
  WHERE e.phase = 'escalate' AND a.rule = $1 AND a.reason = 'storm_blocked'`, rule)
		if n != 1 {
			t.Errorf("%s: %d escalations of storm-blocked incidents, want 1", rule, n)
		}
	}
	// The breaker: 3 not_recovered opened it; the rest were refused and paged.
	if outcome["restart-c failed not_recovered"] != breakerFails || outcome["restart-c skipped breaker_open"] != len(late) {
		t.Errorf("restart-c: %d not_recovered, %d breaker_open; want %d and %d", outcome["restart-c failed not_recovered"],
			outcome["restart-c skipped breaker_open"], breakerFails, len(late))
	}
	// The pause: nothing disruptive started after it committed; D was stopped part way. An
	// ordering fact, not a clock one: a start's audit row is written in the claim's transaction,
	// which holds the kill switch's lock (shared) until it commits, and the pause writes its own
	// under the same lock (exclusive), so a start after the pause has a higher audit id. (The
	// pause's `at` is read before it waits for that lock: a start may carry a later time and
	// still have committed first.)
	var pauseID int64
	must(t, db.QueryRow(ctx, `SELECT id FROM audit WHERE kind = 'control' AND reason = 'pause'`).Scan(&pauseID))
	if n := count(`SELECT count(*) FROM audit au JOIN actions a ON a.id = au.action_id
  WHERE au.kind = 'action' AND au.reason = 'started' AND a.class = 'disruptive' AND au.id > $1`, pauseID); n != 0 {
		t.Errorf("%d disruptive actions started after the pause", n)
	}
	// A restart running when the pause committed is interrupted (issue 13): unknown (it may have
	// evicted) or failed (it had not), reason paused.
	dDone := outcome["restart-d succeeded "]
	dCut := outcome["restart-d unknown paused"] + outcome["restart-d failed paused"]
	if dDone < 2 || dDone >= len(crashD) || outcome["restart-d skipped paused"]+dCut != len(crashD)-dDone {
		t.Errorf("restart-d: %d succeeded, %d skipped paused, %d interrupted, want the pause to stop the rest of %d",
			dDone, outcome["restart-d skipped paused"], dCut, len(crashD))
	}

	// --- The cluster. ---
	for k, n := range minReady {
		if n < floor {
			t.Errorf("%s dropped to %d Ready pods, below its PDB floor %d", k, n, floor)
		}
	}
	lowest := int(replicas)
	for _, n := range minReady {
		lowest = min(lowest, n)
	}
	for _, ns := range []string{nsA, nsB, nsD} {
		waitKubeReady(t, cs, ns, time.Minute)
	}
	evictions := map[string]int{}
	for _, ns := range []string{nsA, nsB, nsC, nsD} {
		for d, n := range restartEvents(t, cs, ns) {
			evictions[ns] += n
			if n > perWorkload {
				t.Errorf("%s/%s: %d evictions, above %d", ns, d, n, perWorkload)
			}
		}
		// Every restart that ran evicted exactly one pod: an Event each, and as many pods replaced.
		// A restart interrupted by the pause after its eviction (unknown, paused) may have one too.
		ran := count(`SELECT count(*) FROM actions WHERE scope = $1 AND phase = 'actions' AND state IN ('succeeded', 'failed') AND reason IN ('', 'not_recovered')`, ns)
		cut := count(`SELECT count(*) FROM actions WHERE scope = $1 AND phase = 'actions' AND state = 'unknown' AND reason = 'paused'`, ns)
		if evictions[ns] < ran || evictions[ns] > ran+cut {
			t.Errorf("namespace %s: %d restart events for %d restarts that ran and %d interrupted after they may have evicted", ns, evictions[ns], ran, cut)
		}
	}
	replaced := 0
	for _, ns := range []string{nsA, nsB, nsC, nsD} {
		_, uids, err := readyByApp(ctx, cs, ns)
		must(t, err)
		for u := range origUIDs {
			delete(uids, u)
		}
		replaced += len(uids)
	}
	t.Logf("storm: %d alerts posted; evictions A=%d B=%d C=%d D=%d; %d new pods; lowest Ready seen %d of %d (floor %d, %d samples); wall time %s",
		posted, evictions[nsA], evictions[nsB], evictions[nsC], evictions[nsD], replaced, lowest, replicas, floor, samples,
		time.Since(wall).Round(time.Millisecond))
}

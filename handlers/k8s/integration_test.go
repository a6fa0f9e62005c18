package k8s_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/k8s"
	"github.com/responder-sre/responder/handlers/k8s/k8stest"
	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/vocab"
)

// The tests in this file run the handlers against a real control plane (k8stest): the Eviction
// API enforcing PodDisruptionBudgets, a ReplicaSet controller that replaces evicted pods, the
// Deployment controller rolling out, and RBAC.

func TestMain(m *testing.M) { k8stest.Main(m) }

// fast are handler options for a real cluster: short polls and backoff, so a test takes seconds.
func fast(cs kubernetes.Interface, namespaces ...string) k8s.Options {
	return k8s.Options{Client: cs, Namespaces: namespaces, PollInterval: 100 * time.Millisecond,
		Backoff: 100 * time.Millisecond, Instance: "integration-test"}
}

// handler returns the k8s handler called name built with o.
func handler(t *testing.T, o k8s.Options, name string) handlers.Handler {
	t.Helper()
	hs, err := k8s.New(o)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		if h.Spec().Name == name {
			return h
		}
	}
	t.Fatalf("no handler %s", name)
	return nil
}

func build(t *testing.T, h handlers.Handler, p handlers.Params) handlers.Action {
	t.Helper()
	a, err := h.Build(p)
	if err != nil {
		t.Fatalf("build %s %v: %v", h.Spec().Name, p, err)
	}
	return a
}

// inv is the invocation the engine gives Do: an incident and an idempotency key.
func inv(incident int64) handlers.Invocation {
	return handlers.Invocation{IncidentID: incident, IdempotencyKey: "responder-action-" + strconv.FormatInt(incident, 10)}
}

func ready(p *corev1.Pod) bool {
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

// deploy creates a Deployment of replicas pods labelled app=name and waits until all are Ready.
func deploy(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, replicas int32) []corev1.Pod {
	t.Helper()
	labels := map[string]string{"app": name}
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: name, Image: "example.invalid/" + name + ":1"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return waitDeploymentReady(ctx, t, cs, ns, name, int(replicas))
}

// waitDeploymentReady waits for exactly n pods of app=name, all Ready, and the Deployment's status
// saying so; it returns the pods.
func waitDeploymentReady(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, n int) []corev1.Pod {
	t.Helper()
	var pods []corev1.Pod
	testwait.UntilCtx(ctx, t, fmt.Sprintf("%d ready pods of %s/%s", n, ns, name), func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || int(d.Status.ReadyReplicas) != n || int(d.Status.UpdatedReplicas) != n || d.Status.ObservedGeneration < d.Generation {
			return false, nil
		}
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
		if err != nil {
			return false, nil
		}
		pods = pods[:0]
		for _, p := range list.Items {
			if !ready(&p) {
				return false, nil
			}
			pods = append(pods, p)
		}
		return len(pods) == n, nil
	})
	return pods
}

func pdb(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, minAvailable int) {
	t.Helper()
	v := intstr.FromInt(minAvailable)
	_, err := cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec:       policyv1.PodDisruptionBudgetSpec{MinAvailable: &v, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

// waitPDB waits until the disruption controller has observed the budget and allows allowed
// disruptions.
func waitPDB(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string, allowed int32) {
	t.Helper()
	testwait.UntilCtx(ctx, t, fmt.Sprintf("pdb %s allowing %d", name, allowed), func(ctx context.Context) (bool, error) {
		p, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, name, metav1.GetOptions{})
		return err == nil && p.Status.ObservedGeneration == p.Generation && p.Status.DisruptionsAllowed == allowed, nil
	})
}

// events returns the Events responder recorded in ns with reason on the object kind/name.
func events(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, kind, name, reason string) []corev1.Event {
	t.Helper()
	list, err := cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Event
	for _, e := range list.Items {
		if e.Reason == reason && e.InvolvedObject.Kind == kind && e.InvolvedObject.Name == name && e.Source.Component == k8s.Component {
			out = append(out, e)
		}
	}
	return out
}

// TestIntegrationRestartPod: on a 3-replica Deployment with a PDB minAvailable 2, k8s.restart_pod
// evicts one pod (the dry run first changes nothing), the ReplicaSet replaces it and Do succeeds
// after verify, with an Event on the Deployment; with the PDB tightened to allow no disruption, Do
// fails with pdb_blocked after its retries and the pod is still there.
func TestIntegrationRestartPod(t *testing.T) {
	c := k8stest.Shared(t)
	cs := c.Clientset(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	pods := deploy(ctx, t, cs, ns, "web", 3)
	pdb(ctx, t, cs, ns, "web", 2)
	waitPDB(ctx, t, cs, ns, "web", 1)
	t.Logf("deployment and pdb ready in %s", time.Since(begin).Round(time.Millisecond))

	h := handler(t, fast(cs, ns), k8s.RestartPodName)
	victim := pods[0]
	a := build(t, h, handlers.Params{"namespace": ns, "pod": victim.Name, "retry_for": "1s", "verify_timeout": "60s"})
	if err := a.(handlers.Resolver).Resolve(ctx); err != nil {
		t.Fatalf("resolve: %v", err)
	}
	if got, want := a.Target(), ns+"/Deployment/web"; got != want {
		t.Fatalf("target = %q, want %q", got, want)
	}
	if a.Scope() != ns {
		t.Fatalf("scope = %q, want %q", a.Scope(), ns)
	}
	m := a.(handlers.WorkloadMember)
	if size, err := m.WorkloadSize(ctx); err != nil || size != 3 || m.Member() != victim.Name {
		t.Fatalf("member %q of size %d (%v), want %q of 3", m.Member(), size, err, victim.Name)
	}
	al := alert.Alert{Name: "KubePodCrashLooping", StartsAt: time.Now()}

	// The dry run (server-side, DryRun: All) changes nothing.
	if err := a.Check(ctx, al); err != nil {
		t.Fatalf("check: %v", err)
	}
	if p, err := cs.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{}); err != nil || p.UID != victim.UID || p.DeletionTimestamp != nil {
		t.Fatalf("after the dry run the pod is %v (%v), want it untouched", p, err)
	}
	waitPDB(ctx, t, cs, ns, "web", 1)

	begin = time.Now()
	res, err := a.Do(ctx, inv(42), al)
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	t.Logf("restart_pod succeeded in %s: %s", time.Since(begin).Round(time.Millisecond), res.Detail)
	if !strings.Contains(res.Detail, "recovered") {
		t.Fatalf("result %q does not say the workload recovered", res.Detail)
	}
	after := waitDeploymentReady(ctx, t, cs, ns, "web", 3)
	for _, p := range after {
		if p.UID == victim.UID {
			t.Fatalf("evicted pod %s is still there", victim.Name)
		}
	}
	evs := events(ctx, t, cs, ns, "Deployment", "web", k8s.ReasonRestart)
	if len(evs) != 1 || evs[0].Labels[k8s.LabelIncident] != "42" || !strings.Contains(evs[0].Message, victim.Name) ||
		!strings.Contains(evs[0].Message, "incident 42") || !strings.Contains(evs[0].Message, "KubePodCrashLooping") {
		t.Fatalf("restart events = %+v, want one naming the pod, incident 42 and the alert", evs)
	}
	// Do again (a redelivery): the pod is gone, nothing else is evicted.
	if _, err := a.Do(ctx, inv(42), al); err != nil {
		t.Fatalf("second do: %v", err)
	}
	if again := waitDeploymentReady(ctx, t, cs, ns, "web", 3); !samePods(after, again) {
		t.Fatalf("a second Do evicted another pod: %v then %v", names(after), names(again))
	}

	// Tighten the budget: no disruption allowed.
	p, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zero := intstr.FromInt(0)
	p.Spec.MinAvailable, p.Spec.MaxUnavailable = nil, &zero
	if _, err := cs.PolicyV1().PodDisruptionBudgets(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitPDB(ctx, t, cs, ns, "web", 0)
	// A pod that predates the alert: the replacement, created after it (its creation time is in
	// whole seconds, so only when a second boundary fell in between), counts as already replaced.
	victim = after[1]
	for _, p := range after {
		if !p.CreationTimestamp.After(al.StartsAt) {
			victim = p
			break
		}
	}
	blocked := build(t, h, handlers.Params{"namespace": ns, "pod": victim.Name, "retry_for": "1s", "verify_timeout": "60s"})
	if err := blocked.Check(ctx, al); handlers.ReasonOf(err) != vocab.ReasonPDBBlocked {
		t.Fatalf("check under a closed budget: %v, want pdb_blocked", err)
	}
	begin = time.Now()
	_, err = blocked.Do(ctx, inv(43), al)
	took := time.Since(begin)
	if handlers.ReasonOf(err) != vocab.ReasonPDBBlocked {
		t.Fatalf("do under a closed budget: %v, want pdb_blocked", err)
	}
	if took < time.Second || took > 20*time.Second {
		t.Fatalf("pdb_blocked after %s, want after retry_for 1s", took)
	}
	t.Logf("pdb_blocked after %s: %v", took.Round(time.Millisecond), err)
	if got, err := cs.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{}); err != nil || got.UID != victim.UID || got.DeletionTimestamp != nil {
		t.Fatalf("pod refused eviction: %v (%v), want it still there", got, err)
	}
	if evs := events(ctx, t, cs, ns, "Deployment", "web", k8s.ReasonRestartBlocked); len(evs) != 1 || evs[0].Type != corev1.EventTypeWarning {
		t.Fatalf("blocked events = %+v, want one Warning", evs)
	}
}

func names(ps []corev1.Pod) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func samePods(a, b []corev1.Pod) bool {
	if len(a) != len(b) {
		return false
	}
	uids := map[string]bool{}
	for _, p := range a {
		uids[string(p.UID)] = true
	}
	for _, p := range b {
		if !uids[string(p.UID)] {
			return false
		}
	}
	return true
}

// replicaSets returns the ReplicaSets of Deployment name.
func replicaSets(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, name string) []appsv1.ReplicaSet {
	t.Helper()
	list, err := cs.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + name})
	if err != nil {
		t.Fatal(err)
	}
	var out []appsv1.ReplicaSet
	for _, rs := range list.Items {
		if o := metav1.GetControllerOf(&rs); o != nil && o.Kind == "Deployment" && o.Name == name {
			out = append(out, rs)
		}
	}
	return out
}

// TestIntegrationRolloutRestart: the dry run changes nothing; Do patches restartedAt like kubectl,
// the Deployment controller rolls out a new ReplicaSet and Do succeeds once it is done; a second Do
// for the same incident does not patch again.
func TestIntegrationRolloutRestart(t *testing.T) {
	c := k8stest.Shared(t)
	cs := c.Clientset(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	deploy(ctx, t, cs, ns, "api", 3)
	h := handler(t, fast(cs, ns), k8s.RolloutRestartName)
	a := build(t, h, handlers.Params{"namespace": ns, "kind": "Deployment", "name": "api", "verify_timeout": "60s"})
	if got, want := a.Target(), ns+"/Deployment/api"; got != want {
		t.Fatalf("target = %q, want %q", got, want)
	}
	al := alert.Alert{Name: "BackendDown", StartsAt: time.Now()}
	before, err := cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Check(ctx, al); err != nil {
		t.Fatalf("check: %v", err)
	}
	d, err := cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil || d.Generation != before.Generation || d.ResourceVersion != before.ResourceVersion || len(replicaSets(ctx, t, cs, ns, "api")) != 1 {
		t.Fatalf("the dry run changed the deployment (generation %d → %d, %v)", before.Generation, d.Generation, err)
	}

	begin := time.Now()
	res, err := a.Do(ctx, inv(7), al)
	if err != nil {
		t.Fatalf("do: %v", err)
	}
	t.Logf("rollout_restart succeeded in %s: %s", time.Since(begin).Round(time.Millisecond), res.Detail)
	d, err = cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	at := d.Spec.Template.Annotations[k8s.AnnotationRestartedAt]
	if _, perr := time.Parse(time.RFC3339, at); perr != nil || d.Annotations[k8s.AnnotationRestartKey] != "incident-7" {
		t.Fatalf("deployment annotations %v, template %v: want restartedAt (RFC 3339) and the restart key", d.Annotations, d.Spec.Template.Annotations)
	}
	if d.Status.UpdatedReplicas != 3 || d.Status.ReadyReplicas != 3 || d.Status.ObservedGeneration != d.Generation {
		t.Fatalf("Do returned before the rollout finished: %+v", d.Status)
	}
	rss := replicaSets(ctx, t, cs, ns, "api")
	var current int
	for _, rs := range rss {
		if rs.Spec.Template.Annotations[k8s.AnnotationRestartedAt] == at && *rs.Spec.Replicas == 3 {
			current++
		}
	}
	if len(rss) != 2 || current != 1 {
		t.Fatalf("%d ReplicaSets (%d with restartedAt %s and 3 replicas), want the old one and a new one", len(rss), current, at)
	}
	if evs := events(ctx, t, cs, ns, "Deployment", "api", k8s.ReasonRolloutRestart); len(evs) != 1 || evs[0].Labels[k8s.LabelIncident] != "7" {
		t.Fatalf("rollout events = %+v, want one for incident 7", evs)
	}
	// A second Do for the same incident (a redelivery) verifies only.
	gen := d.Generation
	if _, err := a.Do(ctx, inv(7), al); err != nil {
		t.Fatalf("second do: %v", err)
	}
	if d, err := cs.AppsV1().Deployments(ns).Get(ctx, "api", metav1.GetOptions{}); err != nil || d.Generation != gen {
		t.Fatalf("second Do for the same incident patched again (generation %d → %d, %v)", gen, d.Generation, err)
	}
}

// TestIntegrationScale: the dry run changes nothing; Do within bounds sets the replicas and the
// Deployment gets there; a target outside the bounds is refused without a change.
func TestIntegrationScale(t *testing.T) {
	c := k8stest.Shared(t)
	cs := c.Clientset(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	deploy(ctx, t, cs, ns, "worker", 2)
	h := handler(t, fast(cs, ns), k8s.ScaleName)
	spec := func() int32 {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "worker", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return *d.Spec.Replicas
	}
	al := alert.Alert{Name: "QueueBacklog", StartsAt: time.Now()}
	a := build(t, h, handlers.Params{"namespace": ns, "kind": "Deployment", "name": "worker", "delta": 2, "min": 1, "max": 5})
	if err := a.Check(ctx, al); err != nil {
		t.Fatalf("check: %v", err)
	}
	if n := spec(); n != 2 {
		t.Fatalf("the dry run scaled to %d", n)
	}
	if _, err := a.Do(ctx, inv(9), al); err != nil {
		t.Fatalf("do: %v", err)
	}
	if n := spec(); n != 4 {
		t.Fatalf("replicas = %d after delta 2, want 4", n)
	}
	waitDeploymentReady(ctx, t, cs, ns, "worker", 4)
	// The same action again (same key): the delta is not applied twice.
	if _, err := a.Do(ctx, inv(9), al); err != nil || spec() != 4 {
		t.Fatalf("second do: %v, replicas %d, want 4", err, spec())
	}
	if evs := events(ctx, t, cs, ns, "Deployment", "worker", k8s.ReasonScale); len(evs) != 1 {
		t.Fatalf("scale events = %+v, want one", evs)
	}
	over := build(t, h, handlers.Params{"namespace": ns, "kind": "Deployment", "name": "worker", "delta": 2, "min": 1, "max": 5})
	if _, err := over.Do(ctx, inv(10), al); err == nil || !strings.Contains(err.Error(), "above max 5") {
		t.Fatalf("scaling to 6 with max 5: %v, want a refusal", err)
	}
	if n := spec(); n != 4 {
		t.Fatalf("replicas = %d after a refused scale, want 4", n)
	}
}

// TestIntegrationRBAC: a service account bound to the Role `responder rbac` renders (k8s.RBACObjects)
// in one namespace can restart a pod there; in another namespace the eviction is forbidden
// (client_error naming the permission), and it cannot read secrets.
func TestIntegrationRBAC(t *testing.T) {
	c := k8stest.Shared(t)
	admin := c.Clientset(t)
	allowed, other := c.Namespace(t), c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	if _, err := admin.CoreV1().ServiceAccounts(allowed).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "responder"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var specs []handlers.Spec
	hs, err := k8s.New(k8s.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs {
		specs = append(specs, h.Spec())
	}
	objs, err := k8s.RBACObjects(specs, []string{allowed}, k8s.RBACOptions{ServiceAccount: "responder", ServiceAccountNamespace: allowed})
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *rbacv1.Role:
			_, err = admin.RbacV1().Roles(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *rbacv1.RoleBinding:
			_, err = admin.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected RBAC object %T", o)
		}
		if err != nil {
			t.Fatalf("apply %T: %v", o, err)
		}
	}
	in := deploy(ctx, t, admin, allowed, "web", 2)
	out := deploy(ctx, t, admin, other, "web", 2)

	sa, err := kubernetes.NewForConfig(c.Impersonate("system:serviceaccount:" + allowed + ":responder"))
	if err != nil {
		t.Fatal(err)
	}
	testwait.UntilCtx(ctx, t, "the RoleBinding to take effect", func(ctx context.Context) (bool, error) {
		_, err := sa.CoreV1().Pods(allowed).Get(ctx, in[0].Name, metav1.GetOptions{})
		return err == nil, nil
	})
	// Both namespaces pass the allowlist: RBAC is what stops the second.
	h := handler(t, fast(sa, allowed, other), k8s.RestartPodName)
	al := alert.Alert{Name: "KubePodCrashLooping", StartsAt: time.Now()}
	t.Run("evict in the bound namespace", func(t *testing.T) {
		a := build(t, h, handlers.Params{"namespace": allowed, "pod": in[0].Name, "verify_timeout": "60s"})
		if err := a.Check(ctx, al); err != nil {
			t.Fatalf("check: %v", err)
		}
		if _, err := a.Do(ctx, inv(1), al); err != nil {
			t.Fatalf("do: %v", err)
		}
		if evs := events(ctx, t, admin, allowed, "Deployment", "web", k8s.ReasonRestart); len(evs) != 1 {
			t.Fatalf("events = %+v, want one (the Role grants creating Events)", evs)
		}
	})
	t.Run("forbidden in another namespace", func(t *testing.T) {
		a := build(t, h, handlers.Params{"namespace": other, "pod": out[0].Name, "verify_timeout": "60s"})
		_, err := a.Do(ctx, inv(2), al)
		if handlers.ReasonOf(err) != vocab.ReasonClientError || !strings.Contains(err.Error(), "forbidden") ||
			!strings.Contains(err.Error(), `needs "get" on "pods" in namespace "`+other+`"`) {
			t.Fatalf("do in %s: %v, want client_error naming the missing permission", other, err)
		}
		if p, err := admin.CoreV1().Pods(other).Get(ctx, out[0].Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
			t.Fatalf("pod in %s: %v (%v), want untouched", other, p, err)
		}
		// Even with the pod known, the eviction itself is refused by RBAC.
		err = sa.CoreV1().Pods(other).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: out[0].Name, Namespace: other}})
		if !apierrors.IsForbidden(err) {
			t.Fatalf("evict in %s: %v, want Forbidden", other, err)
		}
	})
	t.Run("no secrets", func(t *testing.T) {
		for _, ns := range []string{allowed, other} {
			if _, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("list secrets in %s: %v, want Forbidden", ns, err)
			}
			if _, err := sa.CoreV1().Secrets(ns).Get(ctx, "any", metav1.GetOptions{}); !apierrors.IsForbidden(err) {
				t.Errorf("get secret in %s: %v, want Forbidden", ns, err)
			}
		}
	})
	t.Run("no delete", func(t *testing.T) {
		if err := sa.CoreV1().Pods(allowed).Delete(ctx, "any", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("delete pod: %v, want Forbidden (responder only evicts)", err)
		}
	})
}

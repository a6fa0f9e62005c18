package k8s

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

var (
	t0         = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	podCreated = t0.Add(-time.Hour)
	alertStart = t0.Add(-10 * time.Minute)
)

// env is a fake cluster, a fake clock and the three handlers.
type env struct {
	t  *testing.T
	cs *fake.Clientset

	mu      sync.Mutex
	now     time.Time
	sleeps  []time.Duration
	onSleep func(e *env) // runs on every Sleep, after the clock moved: the cluster "progresses"

	restart, rollout, scale handlers.Handler
}

func newEnv(t *testing.T, objs ...runtime.Object) *env {
	t.Helper()
	e := &env{t: t, cs: fake.NewClientset(objs...), now: t0}
	// The fake tracker ignores DryRun: answer dry-run writes like the API server, without
	// persisting anything.
	e.cs.PrependReactor("*", "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var dry []string
		switch a := a.(type) {
		case k8stesting.PatchActionImpl:
			dry = a.PatchOptions.DryRun
		case k8stesting.UpdateActionImpl:
			dry = a.UpdateOptions.DryRun
		case k8stesting.CreateActionImpl:
			dry = a.CreateOptions.DryRun
		}
		if len(dry) == 0 {
			return false, nil, nil
		}
		return true, nil, nil
	})
	hs, err := New(Options{
		Client:       e.cs,
		Namespaces:   []string{"shop", "payments"},
		Now:          e.clock,
		Sleep:        e.sleep,
		PollInterval: time.Second,
		Backoff:      time.Second,
		Instance:     "responder-0",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.restart, e.rollout, e.scale = hs[0], hs[1], hs[2]
	return e
}

type policyEviction = policyv1.Eviction

func conflict(name string) error {
	return apierrors.NewConflict(schema.GroupResource{Group: "apps", Resource: "deployments"}, name, errors.New("the object has been modified"))
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.now
}

func (e *env) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	e.mu.Lock()
	e.now = e.now.Add(d)
	e.sleeps = append(e.sleeps, d)
	hook := e.onSleep
	e.mu.Unlock()
	if hook != nil {
		hook(e)
	}
	return nil
}

// invFor is an invocation with an incident and an idempotency key like the engine's.
func invFor(incident int64, key string) handlers.Invocation {
	return handlers.Invocation{IncidentID: incident, IdempotencyKey: key}
}

var crashLooping = alert.Alert{Name: "KubePodCrashLooping", Status: alert.StatusFiring, StartsAt: alertStart,
	Labels: map[string]string{"namespace": "shop", "pod": "web-abc-1"}}

func build(t *testing.T, h handlers.Handler, p handlers.Params) handlers.Action {
	t.Helper()
	if err := handlers.CheckParams(h.Spec(), p); err != nil {
		t.Fatalf("CheckParams(%v): %v", p, err)
	}
	a, err := h.Build(p)
	if err != nil {
		t.Fatalf("Build(%v): %v", p, err)
	}
	return a
}

// wantReason fails unless err has the reason and contains every fragment.
func wantReason(t *testing.T, err error, reason vocab.Reason, fragments ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want reason %s", reason)
	}
	if got := handlers.ReasonOf(err); got != reason {
		t.Fatalf("reason = %s, want %s (err: %v)", got, reason, err)
	}
	for _, f := range fragments {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error %q does not contain %q", err, f)
		}
	}
}

// Fixtures: Deployment shop/web (3 replicas) → ReplicaSet web-abc → pods web-abc-1..3, all Ready.

func deployment(ns, name string, replicas int32) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Generation: 1, ResourceVersion: "1"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(replicas),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": name}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": name}}},
		},
		Status: appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: replicas, UpdatedReplicas: replicas,
			ReadyReplicas: replicas, AvailableReplicas: replicas},
	}
}

func replicaSet(d *appsv1.Deployment, name string) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Namespace: d.Namespace, Name: name, UID: types.UID("uid-" + name),
			OwnerReferences: []metav1.OwnerReference{controllerRef("apps/v1", Deployment, d.Name, d.UID)}},
		Spec: appsv1.ReplicaSetSpec{Replicas: d.Spec.Replicas, Selector: d.Spec.Selector},
	}
}

func controllerRef(apiVersion, kind, name string, uid types.UID) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: apiVersion, Kind: kind, Name: name, UID: uid, Controller: ptr.To(true)}
}

func pod(ns, name string, labels map[string]string, owner *metav1.OwnerReference, ready bool) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID("uid-" + name), Labels: labels,
			CreationTimestamp: metav1.NewTime(podCreated)},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}},
	}
	if ready {
		p.Status.Conditions[0].Status = corev1.ConditionTrue
	}
	if owner != nil {
		p.OwnerReferences = []metav1.OwnerReference{*owner}
	}
	return p
}

// webCluster returns Deployment shop/web with replicas pods; ready says which are Ready.
func webCluster(replicas int32, ready ...bool) []runtime.Object {
	d := deployment("shop", "web", replicas)
	rs := replicaSet(d, "web-abc")
	ref := controllerRef("apps/v1", ReplicaSet, rs.Name, rs.UID)
	objs := []runtime.Object{d, rs}
	for i := range int(replicas) {
		r := true
		if i < len(ready) {
			r = ready[i]
		}
		objs = append(objs, pod("shop", fmt.Sprintf("web-abc-%d", i+1), map[string]string{"app": "web"}, &ref, r))
	}
	return objs
}

// evictions counts eviction calls and answers them with answer (nil: 201, the pod is deleted).
type evictions struct {
	mu     sync.Mutex
	calls  int
	dry    int
	answer func(n int) error
}

func (e *env) reactEvictions(answer func(n int) error) *evictions {
	ev := &evictions{answer: answer}
	e.cs.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.GetSubresource() != "eviction" {
			return false, nil, nil
		}
		c := a.(k8stesting.CreateActionImpl)
		evi := c.Object.(interface{ GetName() string })
		ev.mu.Lock()
		dry := false
		if e, ok := c.Object.(*policyEviction); ok && e.DeleteOptions != nil && len(e.DeleteOptions.DryRun) > 0 {
			dry = true
			ev.dry++
		} else {
			ev.calls++
		}
		n := ev.calls
		ev.mu.Unlock()
		if ev.answer != nil {
			if err := ev.answer(n); err != nil {
				if apierrors.IsNotFound(err) { // the pod went away on its own just before
					_ = e.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), a.GetNamespace(), evi.GetName())
				}
				return true, nil, err
			}
		}
		if !dry {
			if err := e.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), a.GetNamespace(), evi.GetName()); err != nil {
				return true, nil, err
			}
		}
		return true, nil, nil
	})
	return ev
}

func (ev *evictions) count() (applied, dry int) {
	ev.mu.Lock()
	defer ev.mu.Unlock()
	return ev.calls, ev.dry
}

// addPod adds a pod to the fake cluster.
func (e *env) addPod(p *corev1.Pod) {
	e.t.Helper()
	if err := e.cs.Tracker().Add(p); err != nil {
		e.t.Fatal(err)
	}
}

// events returns the Events recorded in ns.
func (e *env) events(ns string) []corev1.Event {
	e.t.Helper()
	l, err := e.cs.CoreV1().Events(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return l.Items
}

// reactScale serves the scale subresource of Deployments and StatefulSets from the tracker, like
// the API server (the fake does not implement subresources).
func (e *env) reactScale() {
	for _, verb := range []string{"get", "update"} {
		e.cs.PrependReactor(verb, "*", func(a k8stesting.Action) (bool, runtime.Object, error) {
			if a.GetSubresource() != "scale" {
				return false, nil, nil
			}
			gvr := a.GetResource()
			var name string
			var want *autoscalingv1.Scale
			switch a := a.(type) {
			case k8stesting.GetActionImpl:
				name = a.Name
			case k8stesting.UpdateActionImpl:
				want = a.Object.(*autoscalingv1.Scale)
				name = want.Name
			}
			obj, err := e.cs.Tracker().Get(gvr, a.GetNamespace(), name)
			if err != nil {
				return true, nil, err
			}
			var replicas *int32
			var meta *metav1.ObjectMeta
			switch o := obj.(type) {
			case *appsv1.Deployment:
				replicas, meta = o.Spec.Replicas, &o.ObjectMeta
			case *appsv1.StatefulSet:
				replicas, meta = o.Spec.Replicas, &o.ObjectMeta
			}
			if want != nil {
				if want.ResourceVersion != "" && want.ResourceVersion != meta.ResourceVersion {
					return true, nil, conflict(name)
				}
				if len(a.(k8stesting.UpdateActionImpl).UpdateOptions.DryRun) == 0 {
					*replicas = want.Spec.Replicas
					meta.ResourceVersion += "1"
					if err := e.cs.Tracker().Update(gvr, obj, a.GetNamespace()); err != nil {
						return true, nil, err
					}
				}
			}
			return true, &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: meta.Namespace, UID: meta.UID,
				ResourceVersion: meta.ResourceVersion}, Spec: autoscalingv1.ScaleSpec{Replicas: *replicas}}, nil
		})
	}
}

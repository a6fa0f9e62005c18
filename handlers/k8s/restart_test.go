package k8s

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

var podsGR = schema.GroupResource{Resource: "pods"}

func tooManyRequests() error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: "DisruptionBudget", Message: "The disruption budget web needs 3 healthy pods and has 3 currently"})
	return err
}

func severalBudgets() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500, Reason: metav1.StatusReasonInternalError,
		Message: "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."}}
}

// replaceWhenGone is an onSleep hook: once pod web-abc-1 is gone, the ReplicaSet's replacement
// web-abc-9 appears, Ready when ready.
func replaceWhenGone(ready bool) func(*env) {
	return func(e *env) {
		if _, err := e.cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), "shop", "web-abc-1"); err == nil {
			return
		}
		if _, err := e.cs.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), "shop", "web-abc-9"); err == nil {
			return
		}
		ref := controllerRef("apps/v1", ReplicaSet, "web-abc", "uid-web-abc")
		p := pod("shop", "web-abc-9", map[string]string{"app": "web"}, &ref, ready)
		p.CreationTimestamp = metav1.NewTime(e.now)
		e.addPod(p)
	}
}

func TestRestartPodDo(t *testing.T) {
	standalone := pod("shop", "debug", map[string]string{"app": "debug"}, nil, true)
	job := pod("shop", "migrate-x", map[string]string{"job": "migrate"}, ptr.To(controllerRef("batch/v1", "Job", "migrate", "uid-job")), false)
	terminating := webCluster(3)
	terminating[2].(*corev1.Pod).DeletionTimestamp = ptr.To(metav1.NewTime(t0))
	reborn := webCluster(3)
	reborn[2].(*corev1.Pod).CreationTimestamp = metav1.NewTime(alertStart.Add(time.Minute))

	tests := []struct {
		name     string
		objs     []runtime.Object
		params   handlers.Params
		answer   func(n int) error
		onSleep  func(*env)
		reason   vocab.Reason // "" = success
		contains []string     // in the error or the result detail
		evicts   int          // eviction calls; -1: more than one
		podLeft  bool         // web-abc-1 (or the named pod) still exists afterwards
		event    string       // reason of the Event expected on the workload ("" = none)
		workload string       // the result field workload on success ("" by default: shop/Deployment/web)
	}{
		{name: "evicted and recovered", objs: webCluster(3), onSleep: replaceWhenGone(true),
			evicts: 1, event: ReasonRestart, contains: []string{"evicted pod web-abc-1", "shop/Deployment/web recovered", "3 of 3"}},
		{name: "429 retried then evicted", objs: webCluster(3), onSleep: replaceWhenGone(true),
			answer: func(n int) error {
				if n <= 2 {
					return tooManyRequests()
				}
				return nil
			},
			evicts: 3, event: ReasonRestart, contains: []string{"recovered"}},
		{name: "429 until retry_for is pdb_blocked", objs: webCluster(3), params: handlers.Params{"retry_for": "30s"},
			answer: func(int) error { return tooManyRequests() },
			reason: vocab.ReasonPDBBlocked, evicts: -1, podLeft: true, event: ReasonRestartBlocked, contains: []string{"retry_for 30s elapsed", "disruption budget"}},
		{name: "500 several budgets fails at once", objs: webCluster(3), answer: func(int) error { return severalBudgets() },
			reason: vocab.ReasonPDBBlocked, evicts: 1, podLeft: true, contains: []string{"several PodDisruptionBudgets"}},
		{name: "403 names the permission", objs: webCluster(3),
			answer: func(int) error {
				return apierrors.NewForbidden(schema.GroupResource{Resource: "pods/eviction"}, "web-abc-1", nil)
			},
			reason: vocab.ReasonClientError, evicts: 1, podLeft: true, contains: []string{`needs "create" on "pods/eviction" in namespace "shop"`, "responder rbac"}},
		{name: "other 500 is server_error", objs: webCluster(3),
			answer: func(int) error { return apierrors.NewInternalError(context.Canceled) },
			reason: vocab.ReasonServerError, evicts: 1, podLeft: true},
		{name: "404 on eviction: already gone", objs: webCluster(3), onSleep: replaceWhenGone(true),
			answer: func(int) error { return apierrors.NewNotFound(podsGR, "web-abc-1") },
			evicts: 1, event: ReasonRestart, contains: []string{"recovered"}},
		{name: "standalone refused", objs: []runtime.Object{standalone}, params: handlers.Params{"pod": "debug"},
			reason: vocab.ReasonClientError, podLeft: true, contains: []string{"refused", "no controller", "allow_standalone"}},
		{name: "standalone allowed", objs: []runtime.Object{standalone}, params: handlers.Params{"pod": "debug", "allow_standalone": true},
			evicts: 1, event: ReasonRestart, contains: []string{"standalone", "nothing recreates it"}, workload: "none"},
		{name: "job pod refused", objs: []runtime.Object{job}, params: handlers.Params{"pod": "migrate-x"},
			reason: vocab.ReasonClientError, podLeft: true, contains: []string{"batch/v1 Job", "does not handle"}},
		{name: "min_healthy refuses a ready pod", objs: webCluster(3, true, false, true), params: handlers.Params{"min_healthy": 2},
			reason: vocab.ReasonClientError, podLeft: true, contains: []string{"refused", "1 ready of 3", "min_healthy 2"}},
		{name: "min_healthy default 1 refuses the last ready pod", objs: webCluster(1),
			reason: vocab.ReasonClientError, podLeft: true, contains: []string{"0 ready of 1", "min_healthy 1"}},
		{name: "min_healthy 50% of 3 allows 2 left", objs: webCluster(3), params: handlers.Params{"min_healthy": "50%"}, onSleep: replaceWhenGone(true),
			evicts: 1, event: ReasonRestart},
		{name: "min_healthy 100% refuses", objs: webCluster(3), params: handlers.Params{"min_healthy": "100%"},
			reason: vocab.ReasonClientError, podLeft: true, contains: []string{"min_healthy 100% (3)"}},
		{name: "a pod that is not ready never counts against min_healthy", objs: webCluster(1, false), onSleep: replaceWhenGone(true),
			evicts: 1, event: ReasonRestart, contains: []string{"1 of 1"}},
		{name: "not recovered within verify_timeout", objs: webCluster(3), params: handlers.Params{"verify_timeout": "30s"}, onSleep: replaceWhenGone(false),
			reason: vocab.ReasonNotRecovered, evicts: 1, event: ReasonRestart, contains: []string{"did not recover within verify_timeout 30s", "2 of 3"}},
		{name: "pod already gone: no eviction", objs: webCluster(3), params: handlers.Params{"pod": "web-abc-7"}, contains: []string{"already gone"}, workload: "none"},
		{name: "pod terminating: no eviction, verified", objs: terminating, onSleep: func(e *env) {
			_ = e.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), "shop", "web-abc-1")
			replaceWhenGone(true)(e)
		}, contains: []string{"already terminating", "recovered"}},
		{name: "pod created after the alert started: no eviction", objs: reborn, podLeft: true,
			contains: []string{"after the alert started", "recovered", "3 of 3"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.objs...)
			e.onSleep = tc.onSleep
			ev := e.reactEvictions(tc.answer)
			p := handlers.Params{"namespace": "shop", "pod": "web-abc-1"}
			for k, v := range tc.params {
				p[k] = v
			}
			a := build(t, e.restart, p)
			res, err := a.Do(context.Background(), invFor(42, "7"), crashLooping)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				for _, f := range tc.contains {
					if !strings.Contains(res.Detail, f) {
						t.Errorf("detail %q does not contain %q", res.Detail, f)
					}
				}
				w := map[string]string{"": "shop/Deployment/web", "none": ""}[tc.workload]
				if f := res.Fields; f["pod"] != p["pod"] || f["workload"] != w {
					t.Errorf("result fields %v, want pod %v, workload %q", f, p["pod"], w)
				}
			} else {
				wantReason(t, err, tc.reason, tc.contains...)
			}
			if got, _ := ev.count(); got != tc.evicts && (tc.evicts != -1 || got <= 1) {
				t.Errorf("evictions = %d, want %d", got, tc.evicts)
			}
			name := p["pod"].(string)
			_, getErr := e.cs.CoreV1().Pods("shop").Get(context.Background(), name, metav1.GetOptions{})
			if left := getErr == nil; left != tc.podLeft {
				t.Errorf("pod %s still there = %v, want %v", name, left, tc.podLeft)
			}
			var reasons []string
			for _, ev := range e.events("shop") {
				reasons = append(reasons, ev.Reason)
				if ev.InvolvedObject.Kind == Deployment && ev.InvolvedObject.Name != "web" {
					t.Errorf("event on %v", ev.InvolvedObject)
				}
				if ev.Labels[LabelIncident] != "42" || ev.Labels[LabelKey] != "7" || !strings.Contains(ev.Message, "incident 42, alert KubePodCrashLooping") {
					t.Errorf("event %s: labels %v, message %q", ev.Reason, ev.Labels, ev.Message)
				}
			}
			switch {
			case tc.event == "" && len(reasons) > 0:
				t.Errorf("events %v, want none", reasons)
			case tc.event != "" && (len(reasons) != 1 || reasons[0] != tc.event):
				t.Errorf("events %v, want one %s", reasons, tc.event)
			}
		})
	}
}

func TestRestartPodBackoff(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	e.reactEvictions(func(int) error { return tooManyRequests() })
	a := build(t, e.restart, handlers.Params{"namespace": "shop", "pod": "web-abc-1", "retry_for": "10m"})
	_, err := a.Do(context.Background(), invFor(1, "1"), crashLooping)
	wantReason(t, err, vocab.ReasonPDBBlocked)
	if n := len(e.sleeps); n < 10 || n > 20 {
		t.Errorf("%d retries in 10m with backoff from 1s to 1m, want 10-20: %v", n, e.sleeps)
	}
	var total time.Duration
	for i, d := range e.sleeps {
		total += d
		if d > maxBackoff+maxBackoff/5 {
			t.Errorf("sleep %d = %s, above the cap", i, d)
		}
	}
	if total != 10*time.Minute {
		t.Errorf("slept %s in total, want exactly retry_for 10m", total)
	}
}

func TestRestartPodDeadlineLeavesTimeToVerify(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	e.reactEvictions(func(int) error { return tooManyRequests() })
	a := build(t, e.restart, handlers.Params{"namespace": "shop", "pod": "web-abc-1"})
	// The fake clock starts at t0, the context's deadline is in wall time: 1m from now leaves no
	// room for a retry plus the 2m verify.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	e.now = time.Now()
	_, err := a.Do(ctx, invFor(1, "1"), crashLooping)
	wantReason(t, err, vocab.ReasonPDBBlocked, "no time left")
}

func TestRestartPodTargetAndSize(t *testing.T) {
	ss := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db", UID: "uid-db"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}}}
	bareRS := &appsv1.ReplicaSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "bare", UID: "uid-bare"},
		Spec: appsv1.ReplicaSetSpec{Replicas: ptr.To[int32](4), Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bare"}}}}
	objs := append(webCluster(3), ss, bareRS,
		pod("shop", "db-0", map[string]string{"app": "db"}, ptr.To(controllerRef("apps/v1", StatefulSet, "db", "uid-db")), true),
		pod("shop", "bare-x", map[string]string{"app": "bare"}, ptr.To(controllerRef("apps/v1", ReplicaSet, "bare", "uid-bare")), true),
		pod("shop", "debug", nil, nil, true),
		&batchv1.Job{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "migrate"}})
	tests := []struct {
		pod, target string
		size        int
	}{
		{"web-abc-2", "shop/Deployment/web", 3},
		{"db-0", "shop/StatefulSet/db", 2},
		{"bare-x", "shop/ReplicaSet/bare", 4},
		{"debug", "shop/Pod/debug", 1},
		{"gone", "shop/Pod/gone", 1},
	}
	for _, tc := range tests {
		t.Run(tc.pod, func(t *testing.T) {
			e := newEnv(t, objs...)
			a := build(t, e.restart, handlers.Params{"namespace": "shop", "pod": tc.pod}).(*RestartAction)
			// Target makes no lookup: before Resolve it is the pod.
			if got, want := a.Target(), "shop/Pod/"+tc.pod; got != want {
				t.Errorf("Target() before Resolve = %q, want %q", got, want)
			}
			if err := a.Resolve(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := a.Target(); got != tc.target {
				t.Errorf("Target() = %q, want %q", got, tc.target)
			}
			if a.Scope() != "shop" || a.Member() != tc.pod {
				t.Errorf("Scope() = %q, Member() = %q", a.Scope(), a.Member())
			}
			n, err := a.WorkloadSize(context.Background())
			if err != nil || n != tc.size {
				t.Errorf("WorkloadSize() = %d, %v; want %d", n, err, tc.size)
			}
			// A second action for the same pod resolves from the handler's cache, even once the pod is
			// gone (the executor builds again from the stored params).
			_ = e.cs.Tracker().Delete(corev1.SchemeGroupVersion.WithResource("pods"), "shop", tc.pod)
			b := build(t, e.restart, handlers.Params{"namespace": "shop", "pod": tc.pod}).(*RestartAction)
			if err := b.Resolve(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := b.Target(); got != tc.target {
				t.Errorf("after the pod is gone, Target() = %q, want %q", got, tc.target)
			}
		})
	}
}

func TestRestartPodCheck(t *testing.T) {
	tests := []struct {
		name   string
		objs   []runtime.Object
		answer func(int) error
		reason vocab.Reason
	}{
		{name: "dry run passes", objs: webCluster(3)},
		{name: "budget would refuse", objs: webCluster(3), answer: func(int) error { return tooManyRequests() }, reason: vocab.ReasonPDBBlocked},
		{name: "min_healthy", objs: webCluster(1), reason: vocab.ReasonClientError},
		{name: "pod gone", objs: webCluster(3)[:2], reason: vocab.ReasonError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.objs...)
			ev := e.reactEvictions(tc.answer)
			a := build(t, e.restart, handlers.Params{"namespace": "shop", "pod": "web-abc-1"})
			err := a.Check(context.Background(), crashLooping)
			if tc.reason == "" && err != nil {
				t.Fatalf("Check: %v", err)
			}
			if tc.reason != "" {
				wantReason(t, err, tc.reason)
			}
			applied, dry := ev.count()
			if applied != 0 {
				t.Errorf("Check made %d real evictions", applied)
			}
			if wantDry := tc.reason == "" || tc.reason == vocab.ReasonPDBBlocked; wantDry != (dry == 1) {
				t.Errorf("dry-run evictions = %d", dry)
			}
			if _, err := e.cs.CoreV1().Pods("shop").Get(context.Background(), "web-abc-1", metav1.GetOptions{}); err != nil && tc.name != "pod gone" {
				t.Errorf("pod gone after Check: %v", err)
			}
		})
	}
}

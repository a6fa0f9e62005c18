package k8s

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// patches returns the patches sent, dry runs apart.
func (e *env) patches() (applied, dry []string) {
	for _, a := range e.cs.Actions() {
		if p, ok := a.(k8stesting.PatchActionImpl); ok {
			if len(p.PatchOptions.DryRun) > 0 {
				dry = append(dry, string(p.Patch))
			} else {
				applied = append(applied, string(p.Patch))
			}
		}
	}
	return applied, dry
}

func (e *env) deployment(name string) *appsv1.Deployment {
	e.t.Helper()
	d, err := e.cs.AppsV1().Deployments("shop").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

func TestRolloutRestartDo(t *testing.T) {
	paused := deployment("shop", "web", 3)
	paused.Spec.Paused = true
	rolling := deployment("shop", "web", 3)
	rolling.Status.UpdatedReplicas = 1
	stuck := deployment("shop", "web", 3)
	stuck.Status.Conditions = []appsv1.DeploymentCondition{{Type: appsv1.DeploymentProgressing, Reason: "ProgressDeadlineExceeded"}}
	onDelete := &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "db"},
		Spec: appsv1.StatefulSetSpec{UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}}}
	progress := func(e *env) { // the controller finishes the rollout
		d := e.deployment("web")
		d.Status.UpdatedReplicas = 3
		if _, err := e.cs.AppsV1().Deployments("shop").UpdateStatus(context.Background(), d, metav1.UpdateOptions{}); err != nil {
			e.t.Error(err)
		}
	}
	tests := []struct {
		name     string
		objs     []runtime.Object
		params   handlers.Params
		onSleep  func(*env)
		reason   vocab.Reason
		contains []string
		patches  int
	}{
		{name: "restarted and rolled out", objs: webCluster(3), params: handlers.Params{"kind": "deployment", "name": "web"},
			patches: 1, contains: []string{"rollout of shop/Deployment/web done"}},
		{name: "derived from a pod", objs: webCluster(3), params: handlers.Params{"pod": "web-abc-2"},
			patches: 1, contains: []string{"shop/Deployment/web"}},
		{name: "rollout finishes on a later poll", objs: append(webCluster(3)[1:], rolling), params: handlers.Params{"kind": "Deployment", "name": "web"},
			onSleep: progress, patches: 1, contains: []string{"3 of 3 replicas updated and ready"}},
		{name: "rollout never finishes", objs: append(webCluster(3)[1:], rolling), params: handlers.Params{"kind": "Deployment", "name": "web", "verify_timeout": "20s"},
			patches: 1, reason: vocab.ReasonNotRecovered, contains: []string{"not done within verify_timeout 20s", "1 of 3 new replicas updated"}},
		{name: "progress deadline exceeded", objs: append(webCluster(3)[1:], stuck), params: handlers.Params{"kind": "Deployment", "name": "web"},
			patches: 1, reason: vocab.ReasonNotRecovered, contains: []string{"progress deadline"}},
		{name: "paused deployment refused", objs: append(webCluster(3)[1:], paused), params: handlers.Params{"kind": "Deployment", "name": "web"},
			reason: vocab.ReasonClientError, contains: []string{"paused", "rollout resume"}},
		{name: "OnDelete refused", objs: []runtime.Object{onDelete}, params: handlers.Params{"kind": "StatefulSet", "name": "db"},
			reason: vocab.ReasonClientError, contains: []string{"OnDelete"}},
		{name: "missing workload", objs: webCluster(3), params: handlers.Params{"kind": "DaemonSet", "name": "web"},
			reason: vocab.ReasonClientError, contains: []string{"not found"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.objs...)
			e.onSleep = tc.onSleep
			p := handlers.Params{"namespace": "shop"}
			for k, v := range tc.params {
				p[k] = v
			}
			a := build(t, e.rollout, p)
			res, err := a.Do(context.Background(), invFor(42, "9"), crashLooping)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				for _, f := range tc.contains {
					if !strings.Contains(res.Detail, f) {
						t.Errorf("detail %q does not contain %q", res.Detail, f)
					}
				}
				if f := res.Fields; f["workload"] != "shop/Deployment/web" {
					t.Errorf("result fields %v, want workload shop/Deployment/web", f)
				}
			} else {
				wantReason(t, err, tc.reason, tc.contains...)
			}
			applied, _ := e.patches()
			if len(applied) != tc.patches {
				t.Fatalf("patches = %q, want %d", applied, tc.patches)
			}
			if tc.patches == 0 {
				return
			}
			d := e.deployment("web")
			if got := d.Spec.Template.Annotations[AnnotationRestartedAt]; got != t0.Format(time.RFC3339) {
				t.Errorf("restartedAt = %q, want %q", got, t0.Format(time.RFC3339))
			}
			if got := d.Annotations[AnnotationRestartKey]; got != "incident-42" {
				t.Errorf("restart key = %q", got)
			}
			var patch map[string]any
			if err := json.Unmarshal([]byte(applied[0]), &patch); err != nil {
				t.Fatal(err)
			}
			if rv := patch["metadata"].(map[string]any)["resourceVersion"]; rv == "" || rv == nil {
				t.Errorf("patch %s carries no resourceVersion", applied[0])
			}
			evs := e.events("shop")
			if len(evs) != 1 || evs[0].Reason != ReasonRolloutRestart || evs[0].InvolvedObject.Name != "web" || evs[0].InvolvedObject.Kind != Deployment {
				t.Errorf("events = %+v", evs)
			}
		})
	}
}

func TestRolloutRestartOncePerIncident(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	p := handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web"}
	if _, err := build(t, e.rollout, p).Do(context.Background(), invFor(42, "9"), crashLooping); err != nil {
		t.Fatal(err)
	}
	e.now = e.now.Add(time.Minute)
	// The same incident (a re-run, or a second step): verified, not patched again.
	res, err := build(t, e.rollout, p).Do(context.Background(), invFor(42, "10"), crashLooping)
	if err != nil || !strings.Contains(res.Detail, "already restarted for incident-42") {
		t.Fatalf("second Do = %q, %v", res.Detail, err)
	}
	if applied, _ := e.patches(); len(applied) != 1 {
		t.Fatalf("patches after a second Do of the same incident: %d, want 1", len(applied))
	}
	// Another incident restarts again.
	if _, err := build(t, e.rollout, p).Do(context.Background(), invFor(43, "11"), crashLooping); err != nil {
		t.Fatal(err)
	}
	if applied, _ := e.patches(); len(applied) != 2 {
		t.Fatalf("patches after another incident: %d, want 2", len(applied))
	}
	if got := e.deployment("web").Spec.Template.Annotations[AnnotationRestartedAt]; got != t0.Add(time.Minute).Format(time.RFC3339) {
		t.Errorf("restartedAt = %q", got)
	}
}

func TestRolloutRestartCheckIsDryRun(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	a := build(t, e.rollout, handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web"})
	if err := a.Check(context.Background(), crashLooping); err != nil {
		t.Fatal(err)
	}
	applied, dry := e.patches()
	if len(applied) != 0 || len(dry) != 1 || !strings.Contains(dry[0], AnnotationRestartedAt) {
		t.Fatalf("applied patches %q, dry %q", applied, dry)
	}
	if _, ok := e.deployment("web").Spec.Template.Annotations[AnnotationRestartedAt]; ok {
		t.Error("Check changed the deployment")
	}
	if got := a.Target(); got != "shop/Deployment/web" {
		t.Errorf("Target() = %q", got)
	}
}

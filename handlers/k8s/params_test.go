package k8s

import (
	"context"
	"strings"
	"testing"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/responder-sre/responder/handlers"
)

func TestParams(t *testing.T) {
	e := newEnv(t)
	byName := map[string]handlers.Handler{RestartPodName: e.restart, RolloutRestartName: e.rollout, ScaleName: e.scale}
	scale := func(extra handlers.Params) handlers.Params {
		p := handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web", "min": 1, "max": 6}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	tests := []struct {
		name    string
		handler string
		params  handlers.Params
		static  string // error at load ("" = accepted)
		build   string // error at Build ("" = accepted); "-" = not built (templated)
	}{
		{"restart ok", RestartPodName, handlers.Params{"namespace": "shop", "pod": "web-abc-1", "min_healthy": "50%", "retry_for": "5m"}, "", ""},
		{"restart templated", RestartPodName, handlers.Params{"namespace": "{{ alert.labels.namespace }}", "pod": "{{ alert.labels.pod }}"}, "", "-"},
		{"namespace not allowed", RestartPodName, handlers.Params{"namespace": "kube-system", "pod": "x"}, `namespace "kube-system" is not allowed (handlers.kubernetes.namespaces: payments, shop)`, "not allowed"},
		{"namespace wildcard", RestartPodName, handlers.Params{"namespace": "*", "pod": "x"}, "wildcard", "wildcard"},
		{"namespace all", RestartPodName, handlers.Params{"namespace": "all", "pod": "x"}, "wildcard", "wildcard"},
		{"pod empty", RestartPodName, handlers.Params{"namespace": "shop", "pod": ""}, "wildcard", "wildcard"},
		{"pod star", RestartPodName, handlers.Params{"namespace": "shop", "pod": "web-*"}, "wildcard", "wildcard"},
		{"pod invalid", RestartPodName, handlers.Params{"namespace": "shop", "pod": "Web_1"}, "not a valid object name", "not a valid object name"},
		{"min_healthy bad", RestartPodName, handlers.Params{"namespace": "shop", "pod": "x", "min_healthy": "150%"}, "percentage", "percentage"},
		{"min_healthy negative", RestartPodName, handlers.Params{"namespace": "shop", "pod": "x", "min_healthy": -1}, "negative", "negative"},
		{"retry_for zero", RestartPodName, handlers.Params{"namespace": "shop", "pod": "x", "retry_for": "0s"}, "positive", "positive"},
		{"rollout ok", RolloutRestartName, handlers.Params{"namespace": "shop", "kind": "StatefulSet", "name": "db"}, "", ""},
		{"rollout from pod", RolloutRestartName, handlers.Params{"namespace": "payments", "pod": "{{ alert.labels.pod }}"}, "", "-"},
		{"rollout both", RolloutRestartName, handlers.Params{"namespace": "shop", "pod": "x", "kind": "Deployment", "name": "web"}, "not both", "not both"},
		{"rollout neither", RolloutRestartName, handlers.Params{"namespace": "shop"}, "kind and name, or pod", "kind and name, or pod"},
		{"rollout kind", RolloutRestartName, handlers.Params{"namespace": "shop", "kind": "ReplicaSet", "name": "web"}, "not one of Deployment, StatefulSet, DaemonSet", "not one of"},
		{"rollout name wildcard", RolloutRestartName, handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "*"}, "wildcard", "wildcard"},
		{"scale ok", ScaleName, scale(handlers.Params{"replicas": 4}), "", ""},
		{"scale templated delta", ScaleName, scale(handlers.Params{"delta": "{{ alert.value }}"}), "", "-"},
		{"scale both", ScaleName, scale(handlers.Params{"replicas": 4, "delta": 1}), "not both", "not both"},
		{"scale neither", ScaleName, scale(nil), "replicas or delta", "replicas or delta"},
		{"scale above max", ScaleName, scale(handlers.Params{"replicas": 7}), "above max 6", "above max 6"},
		{"scale zero", ScaleName, scale(handlers.Params{"replicas": 0, "min": 0}), "allow_zero", "allow_zero"},
		{"scale zero allowed", ScaleName, scale(handlers.Params{"replicas": 0, "min": 0, "allow_zero": true}), "", ""},
		{"scale max below min", ScaleName, scale(handlers.Params{"delta": 1, "min": 5, "max": 4}), "below \"min\"", "below \"min\""},
		{"scale delta zero", ScaleName, scale(handlers.Params{"delta": 0}), "nothing to do", "nothing to do"},
		{"scale kind", ScaleName, scale(handlers.Params{"kind": "DaemonSet", "delta": 1}), "not one of Deployment, StatefulSet", "not one of"},
		{"scale fractional", ScaleName, scale(handlers.Params{"replicas": 2.5}), "integer", "integer"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := byName[tc.handler]
			err := h.(handlers.StaticValidator).ValidateStatic(tc.params)
			check := func(what, want string, err error) {
				t.Helper()
				switch {
				case want == "" && err != nil:
					t.Errorf("%s: %v", what, err)
				case want != "" && err == nil:
					t.Errorf("%s: no error, want %q", what, want)
				case want != "" && !strings.Contains(err.Error(), want):
					t.Errorf("%s: %v, want %q", what, err, want)
				case err != nil && handlers.ReasonOf(err) != vocab.ReasonBadParam:
					t.Errorf("%s: reason %s, want bad_param", what, handlers.ReasonOf(err))
				}
			}
			check("ValidateStatic", tc.static, err)
			if tc.build != "-" {
				_, err := h.Build(tc.params)
				check("Build", tc.build, err)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	// Without a client, handlers build (rules check, rules test) and fail with bad_param when run.
	offline, err := New(Options{Namespaces: []string{"shop"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		h handlers.Handler
		p handlers.Params
	}{
		{offline[0], handlers.Params{"namespace": "shop", "pod": "api-0"}},
		{offline[1], handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "api"}},
		{offline[2], handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "api", "replicas": 3, "min": 1, "max": 5}},
	} {
		act, err := tc.h.Build(tc.p)
		if err != nil {
			t.Fatalf("%s: Build without a client: %v", tc.h.Spec().Name, err)
		}
		if got := act.Target(); !strings.HasPrefix(got, "shop/") {
			t.Errorf("%s: Target without a client = %q", tc.h.Spec().Name, got)
		}
		if _, err := act.Do(context.Background(), handlers.Invocation{}, alert.Alert{}); handlers.ReasonOf(err) != vocab.ReasonBadParam {
			t.Errorf("%s: Do without a client: %v, want bad_param", tc.h.Spec().Name, err)
		}
	}
	for _, ns := range []string{"*", "", "Shop"} {
		if _, err := New(Options{Client: fake.NewClientset(), Namespaces: []string{ns}}); err == nil {
			t.Errorf("New with namespace %q succeeded", ns)
		}
	}
	hs, err := New(Options{Client: fake.NewClientset()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = hs[0].Build(handlers.Params{"namespace": "shop", "pod": "x"})
	if err == nil || !strings.Contains(err.Error(), "handlers.kubernetes.namespaces is empty") {
		t.Errorf("Build with no allowed namespaces: %v", err)
	}
}

func TestSpecs(t *testing.T) {
	e := newEnv(t)
	for _, h := range []handlers.Handler{e.restart, e.rollout, e.scale} {
		s := h.Spec()
		t.Run(s.Name, func(t *testing.T) {
			if s.Class != vocab.ClassDisruptive || s.Scope != "namespace" || len(s.RBAC) == 0 || s.Example == "" || s.DefaultTimeout <= 0 {
				t.Errorf("spec %+v", s)
			}
			if !strings.Contains(s.Example, s.Name) {
				t.Errorf("example does not use %s", s.Name)
			}
		})
	}
	if e.restart.Spec().DefaultApproval != handlers.ApprovalNone || e.scale.Spec().DefaultApproval != handlers.ApprovalRequired ||
		e.rollout.Spec().DefaultApproval != handlers.ApprovalRequired {
		t.Error("default approvals changed")
	}
	if d := e.restart.Spec().DefaultTimeout; d <= DefaultRetryFor+DefaultVerifyTimeout {
		t.Errorf("restart_pod DefaultTimeout %s does not cover retry_for + verify_timeout", d)
	}
}

// FuzzRestartParams feeds rendered params (alert labels end up in them) to Build: it must never
// panic, and whatever it accepts is a single allowed, non-wildcard object.
func FuzzRestartParams(f *testing.F) {
	for _, s := range [][3]string{{"shop", "web-abc-1", "50%"}, {"*", "", "1"}, {"shop", "a.b", "100%"}, {"all", "x", "-1%"}, {"shop", "web\x00", "9999999999999"}} {
		f.Add(s[0], s[1], s[2])
	}
	hs, err := New(Options{Client: fake.NewClientset(), Namespaces: []string{"shop"}})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, ns, pod, minHealthy string) {
		a, err := hs[0].Build(handlers.Params{"namespace": ns, "pod": pod, "min_healthy": minHealthy})
		if err != nil {
			if handlers.ReasonOf(err) != vocab.ReasonBadParam {
				t.Fatalf("reason %s", handlers.ReasonOf(err))
			}
			return
		}
		if ns != "shop" || pod == "" || strings.Contains(pod, "*") || a.Scope() != "shop" {
			t.Fatalf("accepted namespace %q pod %q", ns, pod)
		}
	})
}

package k8s

import (
	"strings"
	"testing"

	k8stesting "k8s.io/client-go/testing"

	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// scaleUpdates counts the scale subresource updates sent, dry runs apart.
func (e *env) scaleUpdates() (applied, dry int) {
	for _, a := range e.cs.Actions() {
		if u, ok := a.(k8stesting.UpdateActionImpl); ok && u.GetSubresource() == "scale" {
			if len(u.UpdateOptions.DryRun) > 0 {
				dry++
			} else {
				applied++
			}
		}
	}
	return applied, dry
}

func TestScaleDo(t *testing.T) {
	tests := []struct {
		name     string
		params   handlers.Params
		reason   vocab.Reason
		contains string
		want     int32 // replicas afterwards
		updates  int
	}{
		{name: "replicas", params: handlers.Params{"replicas": 5}, want: 5, updates: 1, contains: "from 3 to 5"},
		{name: "delta up", params: handlers.Params{"delta": 2}, want: 5, updates: 1, contains: "3+2"},
		{name: "delta down", params: handlers.Params{"delta": -1}, want: 2, updates: 1},
		{name: "already there", params: handlers.Params{"replicas": 3}, want: 3, contains: "already has 3"},
		{name: "delta above max refused", params: handlers.Params{"delta": 10}, want: 3, reason: vocab.ReasonClientError, contains: "13 replicas is above max 6"},
		{name: "delta below min refused", params: handlers.Params{"delta": -2, "min": 2}, want: 3, reason: vocab.ReasonClientError, contains: "below min 2"},
		{name: "delta to zero refused", params: handlers.Params{"delta": -3, "min": 0}, want: 3, reason: vocab.ReasonClientError, contains: "allow_zero"},
		{name: "delta to zero allowed", params: handlers.Params{"delta": -3, "min": 0, "allow_zero": true}, want: 0, updates: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, webCluster(3)...)
			e.reactScale()
			p := handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web", "min": 1, "max": 6}
			for k, v := range tc.params {
				p[k] = v
			}
			a := build(t, e.scale, p)
			if a.Target() != "shop/Deployment/web" || a.Scope() != "shop" {
				t.Errorf("Target() = %q, Scope() = %q", a.Target(), a.Scope())
			}
			res, err := a.Do(t.Context(), invFor(42, "5"), crashLooping)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("Do: %v", err)
				}
				if !strings.Contains(res.Detail, tc.contains) {
					t.Errorf("detail %q does not contain %q", res.Detail, tc.contains)
				}
				if f := res.Fields; f["replicas"] != int(tc.want) || f["previous_replicas"] != 3 {
					t.Errorf("result fields %v, want replicas %d, previous_replicas 3", f, tc.want)
				}
			} else {
				wantReason(t, err, tc.reason, tc.contains)
			}
			if got := *e.deployment("web").Spec.Replicas; got != tc.want {
				t.Errorf("replicas = %d, want %d", got, tc.want)
			}
			if applied, _ := e.scaleUpdates(); applied != tc.updates {
				t.Errorf("scale updates = %d, want %d", applied, tc.updates)
			}
			evs := e.events("shop")
			if len(evs) != tc.updates {
				t.Fatalf("%d events, want %d", len(evs), tc.updates)
			}
			if tc.updates == 1 && (evs[0].Reason != ReasonScale || evs[0].InvolvedObject.UID != "uid-web" || !strings.Contains(evs[0].Message, "incident 42")) {
				t.Errorf("event %+v", evs[0])
			}
		})
	}
}

func TestScaleDeltaOncePerKey(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	e.reactScale()
	p := handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web", "delta": 2, "min": 1, "max": 10}
	for range 2 {
		if _, err := build(t, e.scale, p).Do(t.Context(), invFor(42, "5"), crashLooping); err != nil {
			t.Fatal(err)
		}
	}
	if got := *e.deployment("web").Spec.Replicas; got != 5 {
		t.Fatalf("after two Do with the same key: %d replicas, want 5", got)
	}
	// Another action (key) applies its delta.
	if _, err := build(t, e.scale, p).Do(t.Context(), invFor(42, "6"), crashLooping); err != nil {
		t.Fatal(err)
	}
	if got := *e.deployment("web").Spec.Replicas; got != 7 {
		t.Fatalf("after another key: %d replicas, want 7", got)
	}
}

func TestScaleCheckIsDryRun(t *testing.T) {
	e := newEnv(t, webCluster(3)...)
	e.reactScale()
	a := build(t, e.scale, handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web", "replicas": 4, "min": 1, "max": 6})
	if err := a.Check(t.Context(), crashLooping); err != nil {
		t.Fatal(err)
	}
	if applied, dry := e.scaleUpdates(); applied != 0 || dry != 1 {
		t.Errorf("scale updates: %d applied, %d dry", applied, dry)
	}
	if got := *e.deployment("web").Spec.Replicas; got != 3 {
		t.Errorf("Check changed replicas to %d", got)
	}
	b := build(t, e.scale, handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web", "delta": 9, "min": 1, "max": 6})
	wantReason(t, b.Check(t.Context(), crashLooping), vocab.ReasonClientError, "above max")
}

package app

import (
	"slices"
	"testing"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/builtin"
)

// TestKeepHandlers: a reload keeps the handlers whose keys it did not change (with what they
// remember) and takes the new ones for the others; every built-in handler is listed in
// handlerKeys, so that none is rebuilt by every reload unnoticed.
func TestKeepHandlers(t *testing.T) {
	cfg := config.Default()
	old, err := builtin.Registry(handlers.Env{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	next, err := builtin.Registry(handlers.Env{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range old.Names() {
		if _, ok := keysOf(name); !ok {
			t.Errorf("handler %s is not in handlerKeys", name)
		}
	}
	k8s := []string{"k8s.restart_pod", "k8s.rollout_restart", "k8s.scale"}
	for _, tc := range []struct {
		name    string
		changed []string
		rebuilt []string
	}{
		{"nothing", nil, nil},
		{"rules and safety", []string{"rule_files[0]", "safety.paused", "probes"}, nil},
		{"an allowed host", []string{"handlers.http.allowed_hosts"}, []string{"http.request"}},
		{"a secret", []string{"secrets.tok.file"}, []string{"http.request", "postgres.failover", "postgres.promote", "postgres.switchover"}},
		{"the email recipients", []string{"handlers.page.email.to"}, []string{"page.email"}},
		{"a rotated teams url", []string{"handlers.page.teams.url"}, []string{"page.teams"}},
		{"the slack channel", []string{"slack.channel"}, []string{"page.slack"}},
		{"the namespaces", []string{"handlers.kubernetes.namespaces[1]"}, k8s},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := keepHandlers(old, next, tc.changed)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(reg.Names(), next.Names()) {
				t.Fatalf("names %v, want %v", reg.Names(), next.Names())
			}
			for _, name := range reg.Names() {
				got, _ := reg.Get(name)
				o, _ := old.Get(name)
				n, _ := next.Get(name)
				switch want := slices.Contains(tc.rebuilt, name); {
				case want && got != n:
					t.Errorf("%s: kept, want the one built again", name)
				case !want && got != o:
					t.Errorf("%s: built again, want the one in force kept", name)
				}
			}
		})
	}
}

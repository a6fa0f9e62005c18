package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/handlers/builtin"
	"github.com/responder-sre/responder/rules"
)

// TestRulesLoad loads each phase's generated config and rules as the responder does and checks
// that only the bench rule matches a bench alert, and the pack's shape: 90% pinned.
func TestRulesLoad(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  responderConfig
	}{
		{"dry-run-10", responderConfig{dbURL: "postgres://u@127.0.0.1:5433/db", consumers: 2, rules: 10, actionURL: "http://" + blackhole + "/restart"}},
		{"dry-run-1000", responderConfig{dbURL: "postgres://u@127.0.0.1:5433/db", consumers: 2, rules: 1000, actionURL: "http://" + blackhole + "/restart"}},
		{"notify-1000", responderConfig{dbURL: "postgres://u@127.0.0.1:5433/db", consumers: 2, rules: 1000, actionURL: "http://127.0.0.1:4321/notify",
			notify: true, allowedHosts: []string{"127.0.0.1:4321"}}},
		{"one", responderConfig{dbURL: "postgres://u@127.0.0.1:5433/db", consumers: 1, rules: 1, actionURL: "http://" + blackhole + "/restart"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path, err := c.cfg.write(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				t.Fatal(err)
			}
			reg, err := builtin.Registry(handlers.Env{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			paths, err := cfg.RuleFilePaths()
			if err != nil {
				t.Fatal(err)
			}
			set, err := rules.LoadFiles(paths, reg)
			if err != nil {
				t.Fatal(err)
			}
			if len(set.Rules) != c.cfg.rules {
				t.Fatalf("%d rules loaded, want %d", len(set.Rules), c.cfg.rules)
			}
			var matched []string
			env := rules.NewEnv(benchAlert(), time.Now(), nil)
			pinned := 0
			for _, r := range set.Rules {
				ok, err := r.Match(env)
				if err != nil {
					t.Fatalf("rule %s: %v", r.Name, err)
				}
				if ok {
					matched = append(matched, r.Name)
				}
				if strings.Contains(r.When, "alert.name ==") || strings.Contains(r.When, "alert.labels.service ==") {
					pinned++
				}
			}
			if len(matched) != 1 || matched[0] != benchRule {
				t.Errorf("rules matching a bench alert: %q, want only %s", matched, benchRule)
			}
			if c.cfg.rules == 1000 && (pinned < 880 || pinned > 920) {
				t.Errorf("%d of 1000 rules pin alert.name or labels.service, want about 900", pinned)
			}
		})
	}
}

func benchAlert() alert.Alert {
	return alert.Alert{Name: "KubePodCrashLooping", Status: alert.StatusFiring, StartsAt: time.Now().Add(-time.Minute),
		Labels: map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": podName(1, 2), "container": "app",
			"severity": "critical", "job": "kube-state-metrics", "prometheus": "monitoring/k8s"}}
}

// TestScalingConfigLoad: a scaling replica's config loads as the responder loads it, on the
// external cluster with user and password, stream replicas 3 and the shared signing key.
func TestScalingConfigLoad(t *testing.T) {
	o, err := parseFlags(nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &bench{o: o}
	key := randomKey()
	cfg := b.scalingConfig("postgres://u@127.0.0.1:5433/db", "nats://127.0.0.1:4001,nats://127.0.0.1:4002", "s3cret", key)
	path, err := cfg.write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		URL, User, Password, SigningKey string
		Replicas, Consumers             int
		DB                              string
	}
	want := got{"nats://127.0.0.1:4001,nats://127.0.0.1:4002", "responder", "s3cret", key, 3, o.consumers, "postgres://u@127.0.0.1:5433/db"}
	if diff := cmp.Diff(want, got{c.NATS.URL, c.NATS.User, c.NATS.Password.Value(), c.Bus.SigningKey.Value(), c.Bus.Replicas, c.Bus.Consumers,
		c.Database.URL.Value()}); diff != "" {
		t.Errorf("loaded config (-want +got):\n%s", diff)
	}
	if len(key) < config.MinSigningKeyBytes {
		t.Errorf("signing key of %d bytes, want at least %d", len(key), config.MinSigningKeyBytes)
	}
}

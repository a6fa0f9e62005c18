package helm_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// The HA values (replicaCount > 1): bus replicas 3 in the rendered config, replicas spread over
// nodes, a PodDisruptionBudget keeping all but one serving, and the bus credentials mounted from
// the Secret, never in the ConfigMap.
func TestHAValues(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "-f", values("values-ha.yaml"))
	cfg := configOf(t, m)
	const dir = "/etc/responder/secrets/"
	for path, want := range map[string]string{
		"bus.replicas":         "3",
		"nats.url":             "nats://nats.nats.svc:4222",
		"nats.user":            "responder",
		"nats.password_file":   dir + "nats-password",
		"nats.tls.ca_file":     dir + "nats-tls-ca",
		"nats.tls.server_name": "nats.nats.svc",
		"nats.token_file":      "<missing>",
		"nats.tls.key_file":    "<missing>",
	} {
		if got := lookup(cfg, path); got != want {
			t.Errorf("%s = %q, want %q", path, got, want)
		}
	}

	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	pod := sts.Spec.Template.Spec
	selector := map[string]string{"app.kubernetes.io/name": "responder", "app.kubernetes.io/instance": release}
	if pod.Affinity == nil || pod.Affinity.PodAntiAffinity == nil || len(pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution) != 1 {
		t.Fatalf("affinity = %+v, want one preferred pod anti-affinity term", pod.Affinity)
	}
	term := pod.Affinity.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution[0].PodAffinityTerm
	if term.TopologyKey != "kubernetes.io/hostname" || !cmp.Equal(term.LabelSelector.MatchLabels, selector) {
		t.Errorf("anti-affinity term = %+v, want hostname over %v", term, selector)
	}
	files := projectedFiles(t, pod)
	for _, f := range []string{"secrets/nats-password", "secrets/nats-tls-ca"} {
		if !slices.Contains(files, f) {
			t.Errorf("projected volume lacks %s: %v", f, files)
		}
	}

	var sec corev1.Secret
	m.must(t, "Secret", fullname).decode(t, &sec)
	if got := string(sec.Data["nats-password"]); got != "s3cret-nats-password" {
		t.Errorf("Secret nats-password = %q", got)
	}
	noSecretsInConfigMaps(t, m, sec)

	var pdb struct {
		Spec struct {
			MaxUnavailable any `json:"maxUnavailable"`
			Selector       struct {
				MatchLabels map[string]string `json:"matchLabels"`
			} `json:"selector"`
		} `json:"spec"`
	}
	m.must(t, "PodDisruptionBudget", fullname).decode(t, &pdb)
	if fmt.Sprint(pdb.Spec.MaxUnavailable) != "1" || !cmp.Equal(pdb.Spec.Selector.MatchLabels, selector) {
		t.Errorf("PDB = %+v, want maxUnavailable 1 over %v", pdb.Spec, selector)
	}

	t.Run("hard anti-affinity", func(t *testing.T) {
		t.Parallel()
		m := mustRender(t, "-f", values("values-ha.yaml"), "--set", "podAntiAffinity=hard")
		var sts appsv1.StatefulSet
		m.must(t, "StatefulSet", fullname).decode(t, &sts)
		if a := sts.Spec.Template.Spec.Affinity; a == nil || len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) != 1 {
			t.Errorf("affinity = %+v, want one required term", a)
		}
	})
	t.Run("config.bus.replicas wins", func(t *testing.T) {
		t.Parallel()
		m := mustRender(t, "-f", values("values-ha.yaml"), "--set", "config.bus.replicas=5")
		if got := lookup(configOf(t, m), "bus.replicas"); got != "5" {
			t.Errorf("bus.replicas = %s, want 5", got)
		}
	})
	t.Run("existingSecret", func(t *testing.T) {
		t.Parallel()
		m := mustRender(t, "-f", values("values-ha.yaml"), "--set", "existingSecret=mine", "--set", "nats.password=",
			"--set", "secretKeys.natsToken=bus-token")
		cfg := configOf(t, m)
		if got := lookup(cfg, "nats.token_file"); got != dir+"nats-token" {
			t.Errorf("nats.token_file = %q", got)
		}
		if got := lookup(cfg, "nats.password_file"); got != "<missing>" {
			t.Errorf("nats.password_file = %q, want none (no key named)", got)
		}
		var sts appsv1.StatefulSet
		m.must(t, "StatefulSet", fullname).decode(t, &sts)
		found := false
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Projected == nil {
				continue
			}
			for _, s := range v.Projected.Sources {
				if s.Secret != nil && s.Secret.Name == "mine" {
					for _, it := range s.Secret.Items {
						found = found || (it.Key == "bus-token" && it.Path == "secrets/nats-token")
					}
				}
			}
		}
		if !found {
			t.Errorf("the key bus-token of Secret mine is not mounted at secrets/nats-token")
		}
	})
}

// One replica (the embedded JetStream) keeps its single stream replica and no anti-affinity.
func TestSingleReplicaNoHA(t *testing.T) {
	t.Parallel()
	m := mustRender(t, "--set", "database.url=postgres://db/responder")
	if got := lookup(configOf(t, m), "bus.replicas"); got != "<missing>" {
		t.Errorf("bus.replicas = %s, want none (responder's default)", got)
	}
	var sts appsv1.StatefulSet
	m.must(t, "StatefulSet", fullname).decode(t, &sts)
	if a := sts.Spec.Template.Spec.Affinity; a != nil {
		t.Errorf("affinity = %+v, want none with one replica", a)
	}
}

package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLoadKubernetes(t *testing.T) {
	cfg := mustLoad(t, "conf.kubernetes.yml")
	k := cfg.Handlers.Kubernetes
	if !k.Enabled() || !cmp.Equal(k.Namespaces, []string{"shop", "payments"}) {
		t.Errorf("handlers.kubernetes = %+v", k)
	}
	if want := filepath.Join(cfg.Dir, "kube", "config"); cfg.KubeconfigPath() != want {
		t.Errorf("KubeconfigPath() = %q, want %q", cfg.KubeconfigPath(), want)
	}
	minimal := mustLoad(t, "conf.minimal.yml")
	if minimal.Handlers.Kubernetes.Enabled() || minimal.KubeconfigPath() != "" {
		t.Errorf("minimal config: kubernetes %+v, kubeconfig %q", minimal.Handlers.Kubernetes, minimal.KubeconfigPath())
	}
}

func TestLoadKubernetesErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"conf.kubernetes-bad-namespaces.yml", []string{
			`conf.kubernetes-bad-namespaces.yml:7: handlers.kubernetes.namespaces[1]: "*" is empty or a wildcard`,
			`conf.kubernetes-bad-namespaces.yml:8: handlers.kubernetes.namespaces[2]: "all" is empty or a wildcard`,
			`conf.kubernetes-bad-namespaces.yml:9: handlers.kubernetes.namespaces[3]: "Payments" is not a namespace name`,
			`conf.kubernetes-bad-namespaces.yml:10: handlers.kubernetes.namespaces[4]: "shop" is listed twice`,
			`conf.kubernetes-bad-namespaces.yml:11: handlers.kubernetes.namespaces[5]: "" is empty or a wildcard`,
		}},
		{"conf.kubernetes-bad-no-namespaces.yml", []string{
			`conf.kubernetes-bad-no-namespaces.yml:5: handlers.kubernetes.namespaces: is empty while kubeconfig is set`,
		}},
		{"conf.kubernetes-bad-key.yml", []string{`conf.kubernetes-bad-key.yml:5:`, `namespace`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := load(t, tc.file)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

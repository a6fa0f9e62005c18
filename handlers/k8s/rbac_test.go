package k8s

import (
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/responder-sre/responder/handlers"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func specs(t *testing.T) []handlers.Spec {
	t.Helper()
	hs, err := New(Options{Client: fake.NewClientset(), Namespaces: []string{"shop"}})
	if err != nil {
		t.Fatal(err)
	}
	var out []handlers.Spec
	for _, h := range hs {
		out = append(out, h.Spec())
	}
	return out
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s (-want +got; go test -update rewrites it):\n%s", path, diff)
	}
}

func TestRBACGolden(t *testing.T) {
	all := specs(t)
	tests := []struct {
		file  string
		specs []handlers.Spec
		opts  RBACOptions
	}{
		{"rbac.golden.yaml", all, RBACOptions{}},
		{"rbac-restart-only.golden.yaml", all[:1], RBACOptions{}},
		{"rbac-clusterrole.golden.yaml", all, RBACOptions{ClusterRole: true, Name: "responder-prod", ServiceAccount: "responder", ServiceAccountNamespace: "ops",
			Labels: map[string]string{"app.kubernetes.io/name": "responder"}}},
	}
	for _, tc := range tests {
		t.Run(tc.file, func(t *testing.T) {
			// A non-k8s spec (no RBAC) contributes nothing.
			specs := append(slices.Clone(tc.specs), handlers.Spec{Name: "page.webhook"})
			got, err := RBAC(specs, []string{"shop", "payments", "shop"}, tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, got)
			for _, bad := range []string{"*", "secrets"} {
				if strings.Contains(string(got), bad) {
					t.Errorf("rendered RBAC contains %q", bad)
				}
			}
		})
	}
}

func TestRBACRefuses(t *testing.T) {
	tests := []struct {
		name       string
		rule       handlers.PolicyRule
		namespaces []string
		want       string
	}{
		{"wildcard resource", handlers.PolicyRule{APIGroups: []string{""}, Resources: []string{"*"}, Verbs: []string{"get"}}, []string{"shop"}, "wildcard"},
		{"wildcard verb", handlers.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"*"}}, []string{"shop"}, "wildcard verb"},
		{"wildcard group", handlers.PolicyRule{APIGroups: []string{"*"}, Resources: []string{"pods"}, Verbs: []string{"get"}}, []string{"shop"}, "wildcard"},
		{"secrets", handlers.PolicyRule{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}}, []string{"shop"}, "never gets access to secrets"},
		{"no namespaces", handlers.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}, nil, "namespaces is empty"},
		{"wildcard namespace", handlers.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}, []string{"*"}, "wildcard"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := RBAC([]handlers.Spec{{Name: "x", RBAC: []handlers.PolicyRule{tc.rule}}}, tc.namespaces, RBACOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want %q", err, tc.want)
			}
		})
	}
	if _, err := RBAC([]handlers.Spec{{Name: "page.webhook"}}, []string{"shop"}, RBACOptions{}); err == nil {
		t.Error("RBAC without any Kubernetes handler succeeded")
	}
}

func TestRBACObjects(t *testing.T) {
	objs, err := RBACObjects(specs(t), []string{"shop", "payments"}, RBACOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, o := range objs {
		kinds = append(kinds, o.GetObjectKind().GroupVersionKind().Kind)
	}
	if want := []string{"Role", "RoleBinding", "Role", "RoleBinding"}; !slices.Equal(kinds, want) {
		t.Errorf("kinds = %v, want %v", kinds, want)
	}
}

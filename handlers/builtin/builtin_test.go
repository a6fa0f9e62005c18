package builtin

import (
	"os/exec"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

func TestRegistryBuildsEveryHandler(t *testing.T) {
	reg, err := Registry(handlers.Env{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http.request", "k8s.restart_pod", "k8s.rollout_restart", "k8s.scale", "page.email", "page.slack", "page.teams", "page.webhook",
		"postgres.failover", "postgres.promote", "postgres.switchover"}
	if got := reg.Names(); !slices.Equal(got, want) {
		t.Errorf("Names() = %v, want %v", got, want)
	}
}

func TestRegistryKnowsTheSecretNames(t *testing.T) {
	cfg := config.Default()
	cfg.Secrets = map[string]config.SecretFile{"pager": {File: "pager.key"}, "airflow": {File: "airflow.token"}}
	reg, err := Registry(handlers.Env{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := reg.SecretNames(), []string{"airflow", "pager"}; !slices.Equal(got, want) {
		t.Errorf("SecretNames() = %v, want %v", got, want)
	}
}

// TestClientsReachTheirHandlers: a Kubernetes client in env.Clients configures the k8s handlers;
// without one they build actions that fail with bad_param.
func TestClientsReachTheirHandlers(t *testing.T) {
	cfg := config.Default()
	cfg.Handlers.Kubernetes.Namespaces = []string{"shop"}
	p := handlers.Params{"namespace": "shop", "kind": "Deployment", "name": "web", "replicas": 2, "min": 1, "max": 3}
	for _, tc := range []struct {
		name       string
		clients    []any
		configured bool
	}{
		{"without clients", nil, false},
		{"with a kubernetes client", []any{fake.NewClientset()}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reg, err := Registry(handlers.Env{Config: cfg, Clients: tc.clients})
			if err != nil {
				t.Fatal(err)
			}
			h, _ := reg.Get("k8s.scale")
			a, err := h.Build(p)
			if err != nil {
				t.Fatal(err)
			}
			// Check reads the scale: through the fake it is not found; the unconfigured handler
			// says it is not configured, with bad_param.
			err = a.Check(t.Context(), alert.Alert{})
			unconfigured := handlers.ReasonOf(err) == vocab.ReasonBadParam && strings.Contains(err.Error(), "not configured")
			if unconfigured == tc.configured {
				t.Errorf("Check = %v; want configured = %v", err, tc.configured)
			}
		})
	}
}

// TestNoServeDependencies: rules check and rules test build their handlers here; neither this
// package nor ruletest links the bus, nats-server or app.
func TestNoServeDependencies(t *testing.T) {
	for _, pkg := range []string{".", "../../ruletest"} {
		out, err := exec.Command("go", "list", "-deps", pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, "github.com/nats-io/nats-server") || dep == "github.com/responder-sre/responder/app" ||
				dep == "github.com/responder-sre/responder/bus" {
				t.Errorf("%s links %s", pkg, dep)
			}
		}
	}
}

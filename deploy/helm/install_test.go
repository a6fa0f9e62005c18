package helm_test

import (
	"context"
	"strings"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/responder-sre/responder/handlers/k8s/k8stest"
)

func TestMain(m *testing.M) { k8stest.Main(m) }

// TestInstallOnARealControlPlane: a server-side dry run and then a real helm install on a
// kube-apiserver (k8stest), then the chart's service account, impersonated, may do exactly what
// the k8s.* handlers need in the watched namespaces and nothing else.
func TestInstallOnARealControlPlane(t *testing.T) {
	t.Parallel()
	c := k8stest.Shared(t)
	ns, shop, billing := c.Namespace(t), c.Namespace(t), c.Namespace(t)
	args := []string{"--namespace", ns, "--kubeconfig", c.Kubeconfig, "-f", values("values-db-url.yaml"),
		"--set", "kubernetes.namespaces={" + shop + "," + billing + "}"}
	if _, err := helm(t, append([]string{"install", release, chartDir, "--dry-run=server"}, args...)...); err != nil {
		t.Fatalf("server-side dry run: %v", err)
	}
	out, err := helm(t, append([]string{"install", release, chartDir}, args...)...)
	if err != nil {
		t.Fatalf("helm install: %v", err)
	}
	if want := "url: http://" + fullname + "." + ns + ".svc:9095/webhook/alertmanager"; !strings.Contains(string(out), want) {
		t.Errorf("helm install NOTES lack %q:\n%s", want, out)
	}
	ctx := t.Context()
	admin := c.Clientset(t)
	if _, err := admin.AppsV1().StatefulSets(ns).Get(ctx, fullname, metav1.GetOptions{}); err != nil {
		t.Fatalf("StatefulSet after install: %v", err)
	}
	for _, n := range []string{shop, billing} {
		if _, err := admin.RbacV1().Roles(n).Get(ctx, fullname, metav1.GetOptions{}); err != nil {
			t.Errorf("Role in %s: %v", n, err)
		}
	}

	sa := "system:serviceaccount:" + ns + ":" + fullname
	as, err := kubernetes.NewForConfig(c.Impersonate(sa))
	if err != nil {
		t.Fatal(err)
	}
	type access struct {
		ns, group, resource, sub, verb string
		allowed                        bool
	}
	var cases []access
	for _, n := range []string{shop, billing} {
		cases = append(cases,
			access{n, "", "pods", "", "get", true},
			access{n, "", "pods", "", "list", true},
			access{n, "", "pods", "eviction", "create", true},
			access{n, "apps", "deployments", "", "patch", true},
			access{n, "apps", "statefulsets", "", "get", true},
			access{n, "apps", "replicasets", "", "get", true},
			access{n, "apps", "deployments", "scale", "update", true},
			access{n, "", "events", "", "create", true},
			access{n, "", "secrets", "", "get", false},
			access{n, "", "secrets", "", "list", false},
			access{n, "", "pods", "", "delete", false},
			access{n, "apps", "deployments", "", "delete", false},
			access{n, "apps", "deployments", "", "create", false},
			access{n, "", "configmaps", "", "get", false},
		)
	}
	cases = append(cases,
		access{ns, "", "pods", "", "get", false},         // not a watched namespace
		access{"default", "", "pods", "", "list", false}, // nor this one
		access{"", "", "pods", "", "list", false},        // nothing cluster-wide
	)
	for _, tc := range cases {
		ok := canI(ctx, t, as, tc.ns, tc.group, tc.resource, tc.sub, tc.verb)
		if ok != tc.allowed {
			t.Errorf("%s %s %s/%s in %q: allowed = %v, want %v", sa, tc.verb, tc.resource, tc.sub, tc.ns, ok, tc.allowed)
		}
	}
	// Real calls as the service account: an allowed list succeeds, secrets are forbidden.
	if _, err := as.CoreV1().Pods(shop).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list pods in %s as %s: %v", shop, sa, err)
	}
	if _, err := as.CoreV1().Secrets(shop).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list secrets in %s as %s: err = %v, want Forbidden", shop, sa, err)
	}

	if _, err := helm(t, "uninstall", release, "--namespace", ns, "--kubeconfig", c.Kubeconfig); err != nil {
		t.Errorf("helm uninstall: %v", err)
	}
}

// canI asks the API server, as the impersonated client, whether it may do verb on resource.
func canI(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, group, resource, sub, verb string) bool {
	t.Helper()
	r, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: ns, Group: group, Resource: resource, Subresource: sub, Verb: verb}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("SelfSubjectAccessReview: %v", err)
	}
	return r.Status.Allowed
}

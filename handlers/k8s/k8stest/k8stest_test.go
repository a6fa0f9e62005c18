package k8stest

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/responder-sre/responder/internal/testwait"
)

func TestMain(m *testing.M) { Main(m) }

// TestBinaries builds (or finds) every binary and checks the versions they
// report; `make test` runs it alone first so a cold build does not eat the
// test timeout.
func TestBinaries(t *testing.T) {
	begin := time.Now()
	p := Binaries(t)
	t.Logf("k8stest: binaries ready in %s", time.Since(begin).Round(time.Millisecond))
	cases := []struct {
		name string
		path string
		args []string
		want string
	}{
		{"etcd", p.Etcd, []string{"--version"}, "etcd Version: 3.6."},
		{"kube-apiserver", p.APIServer, []string{"--version"}, "Kubernetes v1.36.3"},
		{"kube-controller-manager", p.ControllerManager, []string{"--version"}, "Kubernetes v1.36.3"},
		{"kube-scheduler", p.Scheduler, []string{"--version"}, "Kubernetes v1.36.3"},
		{"kubectl", p.Kubectl, []string{"version", "--client"}, "Client Version: v1.36.3"},
		{"kwok", p.Kwok, []string{"--version"}, "0.8.0"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := exec.Command(tc.path, tc.args...).CombinedOutput()
			if err != nil {
				t.Fatalf("%s %v: %v\n%s", tc.path, tc.args, err, out)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("%s %v = %q, want it to contain %q", tc.path, tc.args, out, tc.want)
			}
		})
	}
	stages, err := os.ReadFile(p.KwokStages)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"name: node-initialize", "name: pod-ready", "name: pod-delete"} {
		if !strings.Contains(string(stages), name) {
			t.Errorf("%s lacks stage %q", p.KwokStages, name)
		}
	}
}

// TestStart runs a private cluster: the API reports the pinned version, the
// kubeconfig file works, and stopping kills every component.
func TestStart(t *testing.T) {
	c := Start(t)
	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.36.3" {
		t.Errorf("server version %q, want v1.36.3", v.GitVersion)
	}
	nodes, err := cs.CoreV1().Nodes().List(t.Context(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes.Items) != NodeCount {
		t.Errorf("%d nodes, want %d", len(nodes.Items), NodeCount)
	}

	begin := time.Now()
	c.stop()
	t.Logf("k8stest: cluster stopped in %s", time.Since(begin).Round(time.Millisecond))
	for _, p := range c.procs {
		if err := syscall.Kill(-p.cmd.Process.Pid, 0); err != syscall.ESRCH {
			t.Errorf("%s (pgid %d) still running after stop: %v", p.name, p.cmd.Process.Pid, err)
		}
	}
	if _, err := os.Stat(filepath.Join(c.Dir, "kube-apiserver.log")); err != nil {
		t.Errorf("component log missing: %v", err)
	}
}

// TestDeploymentEvictionPDB: a 3-replica Deployment becomes Ready through
// kwok; with a PDB minAvailable 2 the Eviction API refuses (429) while a pod
// is unready and allows (201) once all are ready, and the ReplicaSet replaces
// the evicted pod.
func TestDeploymentEvictionPDB(t *testing.T) {
	c := Shared(t)
	cs := c.Clientset(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	labels := map[string]string{"app": "web"}

	begin := time.Now()
	replicas := int32(3)
	_, err := cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "example.invalid/web:1"}}},
			},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := waitReadyPods(ctx, t, cs, ns, "app=web", 3)
	t.Logf("3 pods Running+Ready in %s", time.Since(begin).Round(time.Millisecond))
	testwait.UntilCtx(ctx, t, "deployment readyReplicas=3", func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{})
		return err == nil && d.Status.ReadyReplicas == 3, nil
	})

	minAvailable := intstr.FromInt32(2)
	_, err = cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: policyv1.PodDisruptionBudgetSpec{
			MinAvailable: &minAvailable,
			Selector:     &metav1.LabelSelector{MatchLabels: labels},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPDB := func(healthy, allowed int32) {
		t.Helper()
		testwait.UntilCtx(ctx, t, "pdb status", func(ctx context.Context) (bool, error) {
			pdb, err := cs.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
			return err == nil && pdb.Status.ObservedGeneration == pdb.Generation &&
				pdb.Status.CurrentHealthy == healthy && pdb.Status.DisruptionsAllowed == allowed, nil
		})
	}
	waitPDB(3, 1)

	// One pod turns unready (as a failing probe would): evicting a healthy
	// pod would leave one available, below minAvailable 2.
	setReady(ctx, t, cs, &pods[0], corev1.ConditionFalse)
	waitPDB(2, 0)
	if code := evict(ctx, t, cs, ns, pods[1].Name); code != http.StatusTooManyRequests {
		t.Fatalf("eviction violating the PDB answered %d, want 429", code)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, pods[1].Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("pod refused eviction is gone: %v", err)
	}

	// Ready again: one disruption allowed, so the eviction goes through.
	setReady(ctx, t, cs, &pods[0], corev1.ConditionTrue)
	waitPDB(3, 1)
	victim := pods[1]
	if code := evict(ctx, t, cs, ns, victim.Name); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("eviction within the PDB answered %d, want 201 or 200", code)
	}
	begin = time.Now()
	testwait.UntilCtx(ctx, t, "evicted pod replaced", func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, p := range list.Items {
			if p.UID == victim.UID {
				return false, nil // not gone yet
			}
			if podReady(&p) {
				ready++
			}
		}
		return ready == 3, nil
	})
	t.Logf("evicted pod replaced by a Ready one in %s", time.Since(begin).Round(time.Millisecond))
}

// TestImpersonate: a service account with no RBAC is forbidden; a Role and
// RoleBinding let it list pods in its namespace, and nothing more.
func TestImpersonate(t *testing.T) {
	c := Shared(t)
	admin := c.Clientset(t)
	ns := c.Namespace(t)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if _, err := admin.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: "robot"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	robot, err := kubernetes.NewForConfig(c.Impersonate("system:serviceaccount:" + ns + ":robot"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = robot.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("list pods without RBAC: err = %v, want Forbidden", err)
	}

	if _, err := admin.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"list"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "pod-reader"},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "pod-reader"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "robot", Namespace: ns}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	testwait.UntilCtx(ctx, t, "RoleBinding effective", func(ctx context.Context) (bool, error) {
		_, err := robot.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
	checks := []struct {
		name string
		do   func() error
	}{
		{"secrets in own namespace", func() error {
			_, err := robot.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"pods in default", func() error {
			_, err := robot.CoreV1().Pods(metav1.NamespaceDefault).List(ctx, metav1.ListOptions{})
			return err
		}},
		{"delete pod", func() error {
			return robot.CoreV1().Pods(ns).Delete(ctx, "anything", metav1.DeleteOptions{})
		}},
	}
	for _, tc := range checks {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.do(); !apierrors.IsForbidden(err) {
				t.Errorf("err = %v, want Forbidden", err)
			}
		})
	}
}

func TestImpersonateGroups(t *testing.T) {
	c := &Cluster{Config: &rest.Config{Host: "https://127.0.0.1:1"}}
	cases := []struct {
		user   string
		groups []string
		want   []string
	}{
		{"system:serviceaccount:shop:robot", nil,
			[]string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"}},
		{"system:serviceaccount:shop:robot", []string{"custom"}, []string{"custom"}},
		{"alice", nil, nil},
		{"bob", []string{"dev", "ops"}, []string{"dev", "ops"}},
	}
	for _, tc := range cases {
		t.Run(tc.user, func(t *testing.T) {
			cfg := c.Impersonate(tc.user, tc.groups...)
			if cfg.Impersonate.UserName != tc.user || strings.Join(cfg.Impersonate.Groups, ",") != strings.Join(tc.want, ",") {
				t.Errorf("Impersonate(%q, %v) = %+v, want groups %v", tc.user, tc.groups, cfg.Impersonate, tc.want)
			}
			if c.Config.Impersonate.UserName != "" {
				t.Errorf("Impersonate changed the admin config")
			}
		})
	}
}

func podReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func waitReadyPods(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, selector string, n int) []corev1.Pod {
	t.Helper()
	var ready []corev1.Pod
	testwait.UntilCtx(ctx, t, "ready pods", func(ctx context.Context) (bool, error) {
		list, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return false, nil
		}
		ready = ready[:0]
		for _, p := range list.Items {
			if podReady(&p) {
				ready = append(ready, p)
			}
		}
		return len(ready) == n && len(list.Items) == n, nil
	})
	return ready
}

// setReady sets the pod's Ready condition, as a kubelet would on a probe
// result (kwok leaves Running pods alone).
func setReady(ctx context.Context, t *testing.T, cs kubernetes.Interface, pod *corev1.Pod, status corev1.ConditionStatus) {
	t.Helper()
	err := wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods(pod.Namespace).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for i := range p.Status.Conditions {
			if p.Status.Conditions[i].Type == corev1.PodReady || p.Status.Conditions[i].Type == corev1.ContainersReady {
				p.Status.Conditions[i].Status = status
				p.Status.Conditions[i].LastTransitionTime = metav1.Now()
			}
		}
		_, err = cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) {
			return false, nil
		}
		return err == nil, err
	})
	if err != nil {
		t.Fatalf("set pod %s Ready=%s: %v", pod.Name, status, err)
	}
}

// evict posts an Eviction for pod and returns the HTTP status code.
func evict(ctx context.Context, t *testing.T, cs kubernetes.Interface, ns, pod string) int {
	t.Helper()
	body := &policyv1.Eviction{TypeMeta: metav1.TypeMeta{APIVersion: "policy/v1", Kind: "Eviction"}, ObjectMeta: metav1.ObjectMeta{Name: pod, Namespace: ns}}
	var code int
	res := cs.CoreV1().RESTClient().Post().Namespace(ns).Resource("pods").Name(pod).SubResource("eviction").
		Body(body).Do(ctx).StatusCode(&code)
	if code == 0 {
		t.Fatalf("evict %s: %v", pod, res.Error())
	}
	return code
}

// Package k8stest runs a real Kubernetes control plane for tests: etcd,
// kube-apiserver, kube-controller-manager and kube-scheduler, with kwok as a
// fake kubelet so pods become Running and Ready without containers.
//
// Binaries builds the components from the Go module proxy at the versions
// pinned in tools/kube (k8s.io/kubernetes, its staging modules re-pointed at
// the published v0.X.Y of the same release), tools/kube/etcd and
// tools/kube/kwok (modules of their own, never imported by responder) and
// caches them by version under responder-tools/ beside the Go build cache,
// like amtest: only the first build on a machine pays (about ten minutes on
// two cores); parallel test processes build once (file lock, then atomic
// renames). `make test` prebuilds them with TestBinaries.
//
// Start runs a cluster on loopback with free ports and a temporary
// directory: etcd; kube-apiserver on 127.0.0.1 with a CA, serving and admin
// client certificates made in Go, a service-account signing key,
// --authorization-mode=Node,RBAC and the default admission plugins (the
// PodDisruptionBudget and Eviction paths are the real ones);
// kube-controller-manager with the workload, disruption, namespace,
// service-account, garbage-collector and RBAC-aggregation controllers (no node
// lifecycle controller, and no TaintNodesByCondition admission: fake nodes are
// never tainted nor evicted); kube-scheduler; and
// kwok managing NodeCount fake Nodes that Start creates. It returns once the
// API is ready, the nodes are Ready and the default ServiceAccount exists,
// and it stops every process (SIGTERM, then SIGKILL, by process group) when
// the test ends, printing the tail of each component's log if the test
// failed. A crashed test binary leaves nothing running (Pdeathsig).
//
// Shared starts one cluster per test binary and hands it to every caller; a
// package that uses it stops it with
//
//	func TestMain(m *testing.M) { k8stest.Main(m) }
//
// Without that, its processes still die with the test binary, but its
// temporary directory (under $TMPDIR, k8stest-*) is left behind. Tests on a
// shared cluster isolate themselves with Namespace.
package k8stest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// NodeCount is the number of fake Nodes in a cluster, named kwok-node-0…
	NodeCount = 2
	// KwokAnnotation marks the Nodes kwok manages (value "fake").
	KwokAnnotation = "kwok.x-k8s.io/node"

	startTimeout = 3 * time.Minute
	stopGrace    = 5 * time.Second
	logTail      = 16 << 10
)

// controllers are the kube-controller-manager controllers a cluster runs.
var controllers = []string{
	"clusterrole-aggregation-controller",
	"cronjob-controller",
	"daemonset-controller",
	"deployment-controller",
	"disruption-controller",
	"endpoints-controller",
	"endpointslice-controller",
	"garbage-collector-controller",
	"job-controller",
	"namespace-controller",
	"pod-garbage-collector-controller",
	"replicaset-controller",
	"replicationcontroller-controller",
	"resourcequota-controller",
	"root-ca-certificate-publisher-controller",
	"serviceaccount-controller",
	"serviceaccount-token-controller",
	"statefulset-controller",
	"ttl-after-finished-controller",
}

// Cluster is a running control plane.
type Cluster struct {
	Config     *rest.Config // admin (system:masters) client config
	Kubeconfig string       // path of an admin kubeconfig file
	Dir        string       // the cluster's directory: PKI, etcd data, component logs

	procs    []*proc // in start order
	stopOnce sync.Once
	ownsDir  bool // stop removes Dir
}

// Start runs a new cluster for t; t.Cleanup stops it.
func Start(t testing.TB) *Cluster {
	t.Helper()
	bins := Binaries(t)
	begin := time.Now()
	c, err := start(t.Context(), bins, t.TempDir(), false)
	if err != nil {
		t.Fatalf("k8stest: %v", err)
	}
	t.Logf("k8stest: cluster started in %s (%s)", time.Since(begin).Round(time.Millisecond), c.Config.Host)
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t)
		}
		c.stop()
	})
	return c
}

var shared struct {
	mu  sync.Mutex
	c   *Cluster
	err error
}

// Shared returns the test binary's one shared cluster, starting it on first
// use. Main stops it when the tests are done. If a test using it fails, the
// tail of each component's log is printed.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c == nil && shared.err == nil {
		bins := Binaries(t)
		begin := time.Now()
		dir, err := os.MkdirTemp("", "k8stest-")
		if err != nil {
			t.Fatalf("k8stest: %v", err)
		}
		// The shared cluster outlives this test: its processes are not tied to the test's context.
		shared.c, shared.err = start(context.WithoutCancel(t.Context()), bins, dir, true)
		if shared.err != nil {
			_ = os.RemoveAll(dir)
		} else {
			t.Logf("k8stest: shared cluster started in %s (%s)", time.Since(begin).Round(time.Millisecond), shared.c.Config.Host)
		}
	}
	if shared.err != nil {
		t.Fatalf("k8stest: shared cluster: %v", shared.err)
	}
	c := shared.c
	t.Cleanup(func() {
		if t.Failed() {
			c.logTails(t)
		}
	})
	return c
}

// Main runs the tests and then stops the shared cluster, if one was started:
// call it from TestMain in packages that use Shared.
func Main(m *testing.M) {
	code := m.Run()
	StopShared()
	os.Exit(code)
}

// StopShared stops the shared cluster, if one was started. Main calls it.
func StopShared() {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.c != nil {
		shared.c.stop()
		shared.c = nil
		shared.err = errors.New("shared cluster already stopped")
	}
}

// Clientset returns a typed client with the admin config.
func (c *Cluster) Clientset(t testing.TB) kubernetes.Interface {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("k8stest: clientset: %v", err)
	}
	return cs
}

// Namespace creates a fresh namespace (k8stest-xxxxx) whose default
// ServiceAccount exists, and deletes it when the test ends.
func (c *Cluster) Namespace(t testing.TB) string {
	t.Helper()
	cs := c.Clientset(t)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	ns, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "k8stest-", Labels: map[string]string{"k8stest": "true"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("k8stest: create namespace: %v", err)
	}
	name := ns.Name
	t.Cleanup(func() {
		// t.Context() is already cancelled when cleanups run.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(t.Context()), 30*time.Second)
		defer cancel()
		err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Errorf("k8stest: delete namespace %s: %v", name, err)
		}
	})
	if err := waitServiceAccount(ctx, cs, name); err != nil {
		t.Fatalf("k8stest: namespace %s: %v", name, err)
	}
	return name
}

// Impersonate returns a copy of the admin config that impersonates user
// with groups. A service-account user (system:serviceaccount:NS:NAME) given
// no groups gets the groups its token would carry (system:serviceaccounts,
// system:serviceaccounts:NS, system:authenticated).
func (c *Cluster) Impersonate(user string, groups ...string) *rest.Config {
	cfg := rest.CopyConfig(c.Config)
	if len(groups) == 0 {
		if rest, ok := strings.CutPrefix(user, "system:serviceaccount:"); ok {
			if ns, _, ok := strings.Cut(rest, ":"); ok {
				groups = []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, "system:authenticated"}
			}
		}
	}
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user, Groups: groups}
	return cfg
}

// logTails logs the end of each component's log.
func (c *Cluster) logTails(t testing.TB) {
	t.Helper()
	for _, p := range c.procs {
		t.Logf("--- %s log (%s, last %d KiB) ---\n%s", p.name, p.log, logTail>>10, tail(p.log, logTail))
	}
}

// stop stops the components in reverse start order and removes Dir if the
// cluster owns it.
func (c *Cluster) stop() {
	c.stopOnce.Do(func() {
		for i := len(c.procs) - 1; i >= 0; i-- {
			c.procs[i].stop(stopGrace)
		}
		if c.ownsDir {
			_ = os.RemoveAll(c.Dir)
		}
	})
}

// start brings a cluster up in dir. On error every started process is
// stopped.
func start(ctx context.Context, bins Paths, dir string, ownsDir bool) (_ *Cluster, err error) {
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	c := &Cluster{Dir: dir, ownsDir: ownsDir}
	defer func() {
		if err != nil {
			for _, p := range c.procs {
				err = fmt.Errorf("%w\n--- %s log ---\n%s", err, p.name, tail(p.log, 8<<10))
			}
			c.stop()
		}
	}()
	pki, err := writePKI(dir)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}

	etcdURL, err := c.startEtcd(ctx, bins.Etcd)
	if err != nil {
		return nil, err
	}
	if err := c.startAPIServer(ctx, bins.APIServer, pki, etcdURL); err != nil {
		return nil, err
	}
	if c.Kubeconfig, err = writeKubeconfig(dir, c.Config); err != nil {
		return nil, err
	}
	if err := c.startComponents(bins, pki); err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return nil, err
	}
	if err := createNodes(ctx, cs); err != nil {
		return nil, err
	}
	if err := c.waitReady(ctx, cs); err != nil {
		return nil, err
	}
	return c, nil
}

// retries is how often a component is restarted on another free port (the
// port may be taken between probing and binding).
const retries = 3

func (c *Cluster) startEtcd(ctx context.Context, bin string) (string, error) {
	var lastErr error
	for range retries {
		client, err1 := freePort()
		peer, err2 := freePort()
		if err := errors.Join(err1, err2); err != nil {
			return "", err
		}
		clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		p, err := startProc(c.Dir, "etcd", bin,
			"--name=k8stest",
			"--data-dir="+filepath.Join(c.Dir, "etcd"),
			"--listen-client-urls="+clientURL,
			"--advertise-client-urls="+clientURL,
			"--listen-peer-urls="+peerURL,
			"--initial-advertise-peer-urls="+peerURL,
			"--initial-cluster=k8stest="+peerURL,
			"--listen-metrics-urls=",
			"--unsafe-no-fsync", // throwaway data: no fsync
			"--log-level=warn",
		)
		if err != nil {
			return "", err
		}
		err = poll(ctx, 50*time.Millisecond, p, func(ctx context.Context) (bool, error) {
			return httpOK(ctx, http.DefaultClient, clientURL+"/health"), nil
		})
		if err == nil {
			c.procs = append(c.procs, p)
			return clientURL, nil
		}
		p.stop(stopGrace)
		lastErr = fmt.Errorf("etcd: %w\n%s", err, tail(p.log, 4096))
	}
	return "", lastErr
}

func (c *Cluster) startAPIServer(ctx context.Context, bin string, pki *pkiFiles, etcdURL string) error {
	var lastErr error
	for range retries {
		port, err := freePort()
		if err != nil {
			return err
		}
		p, err := startProc(c.Dir, "kube-apiserver", bin,
			"--etcd-servers="+etcdURL,
			"--bind-address=127.0.0.1",
			"--advertise-address=127.0.0.1",
			"--secure-port="+strconv.Itoa(port),
			"--cert-dir="+c.Dir,
			"--tls-cert-file="+pki.servingCert,
			"--tls-private-key-file="+pki.servKey,
			"--client-ca-file="+pki.caCert,
			"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
			"--service-account-key-file="+pki.saPub,
			"--service-account-signing-key-file="+pki.saKey,
			"--service-cluster-ip-range="+serviceClusterIPRange,
			"--authorization-mode=Node,RBAC",
			// No node-lifecycle controller runs to lift the not-ready taint
			// this plugin puts on new Nodes; kwok's Nodes are Ready at once.
			"--disable-admission-plugins=TaintNodesByCondition",
			// The kubernetes Service's Endpoints may not point at loopback.
			"--endpoint-reconciler-type=none",
			"--allow-privileged=true",
			"--profiling=false",
			"--v=1",
		)
		if err != nil {
			return err
		}
		c.Config = &rest.Config{
			Host: "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			TLSClientConfig: rest.TLSClientConfig{
				CAData:   pki.caPEM,
				CertData: pki.adminPEM,
				KeyData:  pki.admK,
			},
			QPS:   200,
			Burst: 400,
		}
		hc, err := rest.HTTPClientFor(c.Config)
		if err != nil {
			p.stop(stopGrace)
			return err
		}
		hc.Timeout = 2 * time.Second
		err = poll(ctx, 100*time.Millisecond, p, func(ctx context.Context) (bool, error) {
			return httpOK(ctx, hc, c.Config.Host+"/readyz"), nil
		})
		hc.CloseIdleConnections()
		if err == nil {
			c.procs = append(c.procs, p)
			return nil
		}
		p.stop(stopGrace)
		lastErr = fmt.Errorf("kube-apiserver: %w\n%s", err, tail(p.log, 8192))
	}
	return lastErr
}

// startComponents starts kube-controller-manager, kube-scheduler and kwok.
// None serves a port, so there is nothing to retry.
func (c *Cluster) startComponents(bins Paths, pki *pkiFiles) error {
	specs := []struct {
		name, bin string
		args      []string
	}{
		{"kube-controller-manager", bins.ControllerManager, []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			"--controllers=" + strings.Join(controllers, ","),
			"--service-account-private-key-file=" + pki.saKey,
			"--root-ca-file=" + pki.caCert,
			"--use-service-account-credentials=false",
			"--concurrent-deployment-syncs=10",
			"--concurrent-replicaset-syncs=10",
			"--v=1",
		}},
		{"kube-scheduler", bins.Scheduler, []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
			"--v=1",
		}},
		{"kwok", bins.Kwok, []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--config=" + bins.KwokStages,
			"--manage-all-nodes=false",
			"--manage-nodes-with-annotation-selector=" + KwokAnnotation + "=fake",
			"--node-lease-duration-seconds=40",
		}},
	}
	for _, s := range specs {
		p, err := startProc(c.Dir, s.name, s.bin, s.args...)
		if err != nil {
			return err
		}
		c.procs = append(c.procs, p)
	}
	return nil
}

// createNodes registers the fake Nodes kwok manages.
func createNodes(ctx context.Context, cs kubernetes.Interface) error {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   resource.MustParse("5000"),
	}
	for i := range NodeCount {
		name := "kwok-node-" + strconv.Itoa(i)
		node := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{
				Name:        name,
				Annotations: map[string]string{KwokAnnotation: "fake"},
				Labels: map[string]string{
					"type":                   "kwok",
					"kubernetes.io/hostname": name,
					"kubernetes.io/os":       "linux",
					"kubernetes.io/arch":     "amd64",
					"kubernetes.io/role":     "agent",
				},
			},
			Status: corev1.NodeStatus{
				Capacity:    capacity,
				Allocatable: capacity,
				NodeInfo:    corev1.NodeSystemInfo{KubeletVersion: "fake", OperatingSystem: "linux", Architecture: "amd64"},
			},
		}
		if _, err := cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create node %s: %w", name, err)
		}
	}
	return nil
}

// waitReady waits for every Node to be Ready (kwok) and for the default
// ServiceAccount in namespace default (controller-manager).
func (c *Cluster) waitReady(ctx context.Context, cs kubernetes.Interface) error {
	err := c.pollAll(ctx, func(ctx context.Context) (bool, error) {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		ready := 0
		for _, n := range nodes.Items {
			for _, cond := range n.Status.Conditions {
				if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
					ready++
				}
			}
		}
		return ready == NodeCount, nil
	})
	if err != nil {
		return fmt.Errorf("nodes not Ready: %w", err)
	}
	if err := c.pollAll(ctx, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(metav1.NamespaceDefault).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("default ServiceAccount missing: %w", err)
	}
	return nil
}

// pollAll polls cond until it holds, failing early if a component exited.
func (c *Cluster) pollAll(ctx context.Context, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		for _, p := range c.procs {
			if err := p.alive(); err != nil {
				return false, err
			}
		}
		return cond(ctx)
	})
}

// poll polls cond until it holds, failing early if p exited.
func poll(ctx context.Context, every time.Duration, p *proc, cond wait.ConditionWithContextFunc) error {
	return wait.PollUntilContextCancel(ctx, every, true, func(ctx context.Context) (bool, error) {
		if err := p.alive(); err != nil {
			return false, err
		}
		return cond(ctx)
	})
}

func waitServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	return wait.PollUntilContextCancel(ctx, 50*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
}

func httpOK(ctx context.Context, hc *http.Client, url string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// writeKubeconfig writes an admin kubeconfig for cfg into dir.
func writeKubeconfig(dir string, cfg *rest.Config) (string, error) {
	path := filepath.Join(dir, "admin.kubeconfig")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["k8stest"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos[adminUser] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["k8stest"] = &clientcmdapi.Context{Cluster: "k8stest", AuthInfo: adminUser}
	kc.CurrentContext = "k8stest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return "", fmt.Errorf("kubeconfig: %w", err)
	}
	return path, nil
}

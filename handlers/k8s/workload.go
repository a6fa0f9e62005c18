package k8s

import (
	"context"
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
)

// Workload kinds.
const (
	Deployment  = "Deployment"
	StatefulSet = "StatefulSet"
	DaemonSet   = "DaemonSet"
	ReplicaSet  = "ReplicaSet"
)

// workload names a controller of pods.
type workload struct {
	Namespace, Kind, Name string
}

// String is the canonical target: "namespace/Kind/name".
func (w workload) String() string { return w.Namespace + "/" + w.Kind + "/" + w.Name }

func (w workload) resource() string {
	return strings.ToLower(w.Kind) + "s"
}

// parseKind canonicalises a kind param (case-insensitive) among allowed.
func parseKind(s string, allowed ...string) (string, error) {
	for _, k := range allowed {
		if strings.EqualFold(strings.TrimSpace(s), k) {
			return k, nil
		}
	}
	return "", fmt.Errorf("param \"kind\": %q is not one of %s", s, strings.Join(allowed, ", "))
}

// state is what the handlers need to know about a workload, read from the API server.
type state struct {
	obj         runtime.Object // for Events
	uid         types.UID
	generation  int64
	desired     int // spec.replicas (DaemonSet: status.desiredNumberScheduled)
	ready       int // status ready replicas
	selector    *metav1.LabelSelector
	paused      bool // Deployment spec.paused
	onDelete    bool // StatefulSet/DaemonSet updateStrategy OnDelete
	annotations map[string]string
	// done and progress: the rollout status, like `kubectl rollout status`.
	done     bool
	failed   bool // ProgressDeadlineExceeded
	progress string
}

func replicas(p *int32) int {
	if p == nil {
		return 1
	}
	return int(*p)
}

// get reads a workload.
func (b *base) get(ctx context.Context, w workload) (*state, error) {
	c := call{verb: "get", resource: w.resource(), namespace: w.Namespace, name: w.Name}
	apps := b.client.AppsV1()
	switch w.Kind {
	case Deployment:
		d, err := apps.Deployments(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, apiError(ctx, c, err)
		}
		return deploymentState(d), nil
	case StatefulSet:
		s, err := apps.StatefulSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, apiError(ctx, c, err)
		}
		return statefulSetState(s), nil
	case DaemonSet:
		d, err := apps.DaemonSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, apiError(ctx, c, err)
		}
		return daemonSetState(d), nil
	case ReplicaSet:
		r, err := apps.ReplicaSets(w.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		if err != nil {
			return nil, apiError(ctx, c, err)
		}
		r.APIVersion, r.Kind = "apps/v1", ReplicaSet
		s := &state{obj: r, uid: r.UID, generation: r.Generation, desired: replicas(r.Spec.Replicas),
			ready: int(r.Status.ReadyReplicas), selector: r.Spec.Selector, annotations: r.Annotations}
		s.done = r.Status.ObservedGeneration >= r.Generation && s.ready >= s.desired
		s.progress = fmt.Sprintf("%d of %d replicas ready", s.ready, s.desired)
		return s, nil
	}
	return nil, fmt.Errorf("unsupported kind %q", w.Kind)
}

// deploymentState follows kubectl's rollout status for Deployments.
func deploymentState(d *appsv1.Deployment) *state {
	d.APIVersion, d.Kind = "apps/v1", Deployment
	s := &state{obj: d, uid: d.UID, generation: d.Generation, desired: replicas(d.Spec.Replicas),
		ready: int(d.Status.ReadyReplicas), selector: d.Spec.Selector, paused: d.Spec.Paused, annotations: d.Annotations}
	st := d.Status
	switch {
	case st.ObservedGeneration < d.Generation:
		s.progress = "waiting for the deployment spec update to be observed"
	case progressDeadlineExceeded(d):
		s.failed = true
		s.progress = "deployment exceeded its progress deadline"
	case int(st.UpdatedReplicas) < s.desired:
		s.progress = fmt.Sprintf("%d of %d new replicas updated", st.UpdatedReplicas, s.desired)
	case st.Replicas > st.UpdatedReplicas:
		s.progress = fmt.Sprintf("%d old replicas pending termination", st.Replicas-st.UpdatedReplicas)
	case st.AvailableReplicas < st.UpdatedReplicas || int(st.ReadyReplicas) < s.desired:
		s.progress = fmt.Sprintf("%d of %d updated replicas available, %d ready", st.AvailableReplicas, st.UpdatedReplicas, st.ReadyReplicas)
	default:
		s.done = true
		s.progress = fmt.Sprintf("%d of %d replicas updated and ready", st.ReadyReplicas, s.desired)
	}
	return s
}

func progressDeadlineExceeded(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentProgressing && c.Reason == "ProgressDeadlineExceeded" {
			return true
		}
	}
	return false
}

func statefulSetState(ss *appsv1.StatefulSet) *state {
	ss.APIVersion, ss.Kind = "apps/v1", StatefulSet
	s := &state{obj: ss, uid: ss.UID, generation: ss.Generation, desired: replicas(ss.Spec.Replicas),
		ready: int(ss.Status.ReadyReplicas), selector: ss.Spec.Selector, annotations: ss.Annotations,
		onDelete: ss.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType}
	st := ss.Status
	switch {
	case st.ObservedGeneration < ss.Generation:
		s.progress = "waiting for the statefulset spec update to be observed"
	case s.ready < s.desired:
		s.progress = fmt.Sprintf("%d of %d replicas ready", s.ready, s.desired)
	case int(st.UpdatedReplicas) < s.desired || st.UpdateRevision != "" && st.CurrentRevision != st.UpdateRevision:
		s.progress = fmt.Sprintf("%d of %d replicas updated", st.UpdatedReplicas, s.desired)
	default:
		s.done = true
		s.progress = fmt.Sprintf("%d of %d replicas updated and ready", s.ready, s.desired)
	}
	return s
}

func daemonSetState(d *appsv1.DaemonSet) *state {
	d.APIVersion, d.Kind = "apps/v1", DaemonSet
	st := d.Status
	s := &state{obj: d, uid: d.UID, generation: d.Generation, desired: int(st.DesiredNumberScheduled),
		ready: int(st.NumberReady), selector: d.Spec.Selector, annotations: d.Annotations,
		onDelete: d.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType}
	switch {
	case st.ObservedGeneration < d.Generation:
		s.progress = "waiting for the daemonset spec update to be observed"
	case st.UpdatedNumberScheduled < st.DesiredNumberScheduled:
		s.progress = fmt.Sprintf("%d of %d pods updated", st.UpdatedNumberScheduled, st.DesiredNumberScheduled)
	case st.NumberAvailable < st.DesiredNumberScheduled || st.NumberReady < st.DesiredNumberScheduled:
		s.progress = fmt.Sprintf("%d of %d updated pods available", st.NumberAvailable, st.DesiredNumberScheduled)
	default:
		s.done = true
		s.progress = fmt.Sprintf("%d of %d pods updated and ready", st.NumberReady, st.DesiredNumberScheduled)
	}
	return s
}

// errNoController is returned by owner for a pod without a controller.
type errNoController struct{ pod string }

func (e errNoController) Error() string {
	return "pod " + e.pod + " has no controller (a standalone pod)"
}

// owner returns the workload controlling pod: the Deployment of its ReplicaSet, its StatefulSet
// or DaemonSet, or a bare ReplicaSet. Other controllers (Jobs, custom resources) are refused.
func (b *base) owner(ctx context.Context, pod *corev1.Pod) (workload, error) {
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		return workload{}, errNoController{pod: pod.Namespace + "/" + pod.Name}
	}
	w := workload{Namespace: pod.Namespace, Kind: ref.Kind, Name: ref.Name}
	if !strings.HasPrefix(ref.APIVersion, "apps/") {
		return w, fmt.Errorf("pod %s/%s is controlled by %s %s, which responder does not handle", pod.Namespace, pod.Name, ref.APIVersion, ref.Kind)
	}
	switch ref.Kind {
	case StatefulSet, DaemonSet:
	case ReplicaSet:
		rs, err := b.client.AppsV1().ReplicaSets(pod.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
		if err != nil {
			return w, apiError(ctx, call{verb: "get", resource: "replicasets", namespace: pod.Namespace, name: ref.Name}, err)
		}
		if d := metav1.GetControllerOf(rs); d != nil {
			if d.Kind != Deployment || !strings.HasPrefix(d.APIVersion, "apps/") {
				return w, fmt.Errorf("replicaset %s/%s is controlled by %s %s, which responder does not handle", rs.Namespace, rs.Name, d.APIVersion, d.Kind)
			}
			w = workload{Namespace: pod.Namespace, Kind: Deployment, Name: d.Name}
		}
	default:
		return w, fmt.Errorf("pod %s/%s is controlled by %s %s, which responder does not handle", pod.Namespace, pod.Name, ref.APIVersion, ref.Kind)
	}
	b.cacheOwner(pod.Namespace, pod.Name, w)
	return w, nil
}

// getPod reads a pod; a missing pod is (nil, nil).
func (b *base) getPod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	p, err := b.client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, apiError(ctx, call{verb: "get", resource: "pods", namespace: ns, name: name}, err)
	}
	return p, nil
}

func podReady(p *corev1.Pod) bool {
	if p.DeletionTimestamp != nil || p.Status.Phase != corev1.PodRunning {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// readyPods counts the ready, not terminating pods matching the workload's selector, leaving out
// the pod with UID except.
func (b *base) readyPods(ctx context.Context, w workload, sel *metav1.LabelSelector, except types.UID) (int, error) {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return 0, fmt.Errorf("%s: unusable selector: %w", w, err)
	}
	if s.Empty() {
		return 0, fmt.Errorf("%s: unusable selector: it selects every pod", w)
	}
	if s == labels.Nothing() {
		return 0, fmt.Errorf("%s: selector selects nothing", w)
	}
	list, err := b.client.CoreV1().Pods(w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: s.String()})
	if err != nil {
		return 0, apiError(ctx, call{verb: "list", resource: "pods", namespace: w.Namespace}, err)
	}
	n := 0
	for i := range list.Items {
		p := &list.Items[i]
		if p.UID != except && podReady(p) {
			n++
		}
	}
	return n, nil
}

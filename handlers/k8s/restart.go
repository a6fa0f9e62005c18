package k8s

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// RestartPod is the k8s.restart_pod handler: it evicts one pod through the Eviction API.
type RestartPod struct{ *base }

var (
	_ handlers.Handler         = (*RestartPod)(nil)
	_ handlers.StaticValidator = (*RestartPod)(nil)
	_ handlers.WorkloadMember  = (*RestartAction)(nil)
	_ handlers.Resolver        = (*RestartAction)(nil)
)

const restartExample = `rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    for: 1m
    cooldown: 15m
    actions:
      - handler: k8s.restart_pod
        params: {namespace: "{{ alert.labels.namespace }}", pod: "{{ alert.labels.pod }}", min_healthy: "50%"}
    escalate:
      - handler: page.webhook
        params: {summary: "restart of {{ alert.labels.pod }} did not help"}
`

// Spec describes k8s.restart_pod.
func (h *RestartPod) Spec() handlers.Spec {
	return handlers.Spec{
		Name: RestartPodName,
		Doc: "Restarts one pod by evicting it through the Eviction API, so PodDisruptionBudgets are honoured " +
			"(never a delete); its controller recreates it. Refuses standalone pods and evictions that would " +
			"leave the owning workload below min_healthy ready replicas; retries budget refusals (429) for " +
			"retry_for, then fails with pdb_blocked; then waits up to verify_timeout for the workload's ready " +
			"pods to be back to its desired replicas (else not_recovered).",
		Params: []handlers.Param{
			{Name: "namespace", Type: handlers.String, Required: true, Target: true, Doc: "the pod's namespace; must be in handlers.kubernetes.namespaces"},
			{Name: "pod", Type: handlers.String, Required: true, Target: true, Doc: "the pod's name"},
			{Name: "allow_standalone", Type: handlers.Bool, Doc: "evict a pod no controller owns (nothing recreates it); default false"},
			{Name: "min_healthy", Type: handlers.Any, Doc: "ready replicas the owning workload must keep: an integer or a percentage of its desired replicas such as \"50%\" (rounded up); default 1"},
			{Name: "retry_for", Type: handlers.Duration, Doc: "how long to retry an eviction a PodDisruptionBudget refuses (429); default 10m"},
			{Name: "verify_timeout", Type: handlers.Duration, Doc: "how long to wait for the workload's ready replicas to recover; default 2m"},
		},
		Class:           vocab.ClassDisruptive,
		DefaultApproval: handlers.ApprovalNone,
		DefaultTimeout:  DefaultRetryFor + DefaultVerifyTimeout + slack,
		Target:          "namespace/Kind/name of the owning workload (Deployment, StatefulSet, DaemonSet or bare ReplicaSet); namespace/Pod/name for a standalone or vanished pod",
		Scope:           "namespace",
		RBAC: []handlers.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get", "list"}},
			{APIGroups: []string{""}, Resources: []string{"pods/eviction"}, Verbs: []string{"create"}},
			{APIGroups: []string{"apps"}, Resources: []string{"replicasets", "deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get"}},
		},
		Example: restartExample,
		Results: []handlers.ResultField{
			{Name: "pod", Type: handlers.String, Doc: "the pod restarted (evicted, or found gone or replaced already)"},
			{Name: "workload", Type: handlers.String, Doc: "its owning workload, namespace/Kind/name, that recovered; \"\" when it has none or it is unknown"},
		},
	}
}

// ValidateStatic checks the literal params of a rule.
func (h *RestartPod) ValidateStatic(raw handlers.Params) error {
	_, err := h.parse(raw, true)
	return err
}

// Build validates rendered params.
func (h *RestartPod) Build(p handlers.Params) (handlers.Action, error) {
	return h.parse(p, false)
}

func (h *RestartPod) parse(p handlers.Params, static bool) (*RestartAction, error) {
	r := newReader(p, static)
	a := &RestartAction{h: h}
	a.ns = r.namespace(h.base)
	a.pod = r.object("pod")
	a.allowStandalone = r.Bool("allow_standalone", false)
	a.minHealthy = r.quantity("min_healthy", quantity{n: 1})
	a.retryFor = r.Duration("retry_for", DefaultRetryFor)
	a.verifyTimeout = r.Duration("verify_timeout", DefaultVerifyTimeout)
	if !static && (a.ns == "" || a.pod == "") && !r.Failed() {
		r.Failf("params \"namespace\" and \"pod\" are required")
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// RestartAction is one built k8s.restart_pod.
type RestartAction struct {
	h               *RestartPod
	ns, pod         string
	allowStandalone bool
	minHealthy      quantity
	retryFor        time.Duration
	verifyTimeout   time.Duration

	mu       sync.Mutex
	resolved bool
	target   string
}

// Member is the pod.
func (a *RestartAction) Member() string { return a.pod }

// Scope is the namespace.
func (a *RestartAction) Scope() string { return a.ns }

func (a *RestartAction) podTarget() string { return a.ns + "/Pod/" + a.pod }

// Resolve looks up the pod's owning workload, which Target returns.
func (a *RestartAction) Resolve(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.resolved {
		return nil
	}
	t, err := a.lookupTarget(ctx)
	if err != nil {
		return err
	}
	a.target, a.resolved = t, true
	return nil
}

func (a *RestartAction) lookupTarget(ctx context.Context) (string, error) {
	if a.h.client == nil {
		return a.podTarget(), nil
	}
	if w, ok := a.h.cachedOwner(a.ns, a.pod); ok {
		return w.String(), nil
	}
	pod, err := a.h.getPod(ctx, a.ns, a.pod)
	if err != nil {
		return "", err
	}
	if pod == nil {
		return a.podTarget(), nil
	}
	w, err := a.h.owner(ctx, pod)
	if err != nil {
		return a.podTarget(), nil //nolint:nilerr // a standalone or foreign-owned pod is its own target; Do refuses it
	}
	return w.String(), nil
}

// Target is the owning workload ("namespace/Kind/name") found by Resolve, or "namespace/Pod/name"
// for a pod that is standalone, owned by something else or already gone, and until Resolve
// succeeded. It makes no lookup of its own.
func (a *RestartAction) Target() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.resolved {
		return a.target
	}
	return a.podTarget()
}

// WorkloadSize is the owning workload's desired replicas (1 for a standalone pod).
func (a *RestartAction) WorkloadSize(ctx context.Context) (int, error) {
	if err := a.h.configured(); err != nil {
		return 0, err
	}
	w, ok := a.h.cachedOwner(a.ns, a.pod)
	if !ok {
		pod, err := a.h.getPod(ctx, a.ns, a.pod)
		if err != nil {
			return 0, err
		}
		if pod == nil {
			return 1, nil
		}
		if w, err = a.h.owner(ctx, pod); err != nil {
			return 1, nil //nolint:nilerr // standalone: a workload of one
		}
	}
	st, err := a.h.get(ctx, w)
	if err != nil {
		return 0, err
	}
	return st.desired, nil
}

// plan is what Check and Do learn before evicting.
type plan struct {
	pod *corev1.Pod
	w   workload
	st  *state // nil for a standalone pod
}

// preconditions reads the pod's owner and refuses a standalone pod (unless allowed), a foreign
// controller, and an eviction that would leave the workload below min_healthy ready replicas.
func (a *RestartAction) preconditions(ctx context.Context, pod *corev1.Pod) (*plan, error) {
	p := &plan{pod: pod}
	w, err := a.h.owner(ctx, pod)
	var nc errNoController
	switch {
	case errors.As(err, &nc):
		if !a.allowStandalone {
			return nil, refuse("%v; nothing would recreate it (set allow_standalone: true to evict it anyway)", err)
		}
		return p, nil
	case err != nil && handlers.ReasonOf(err) != vocab.ReasonError:
		return nil, err
	case err != nil:
		return nil, refuse("%v", err)
	}
	p.w = w
	if p.st, err = a.h.get(ctx, w); err != nil {
		return nil, err
	}
	need := a.minHealthy.of(p.st.desired)
	if !podReady(pod) {
		return p, nil // evicting a pod that is not ready does not lower the ready count
	}
	ready, err := a.h.readyPods(ctx, w, p.st.selector, "")
	if err != nil {
		return nil, err
	}
	if ready-1 < need {
		return nil, refuse("evicting ready pod %s would leave %s with %d ready of %d desired replicas, below min_healthy %s (%d)",
			pod.Name, w, ready-1, p.st.desired, a.minHealthy, need)
	}
	return p, nil
}

// Check re-reads the pod, applies the preconditions and asks the API server for a dry-run
// eviction (DryRun: All): a PodDisruptionBudget that would refuse it now is an error.
func (a *RestartAction) Check(ctx context.Context, _ alert.Alert) error {
	if err := a.h.configured(); err != nil {
		return err
	}
	pod, err := a.h.getPod(ctx, a.ns, a.pod)
	switch {
	case err != nil:
		return err
	case pod == nil:
		return fmt.Errorf("pod %s/%s no longer exists", a.ns, a.pod)
	case pod.DeletionTimestamp != nil:
		return fmt.Errorf("pod %s/%s is already terminating", a.ns, a.pod)
	}
	if _, err := a.preconditions(ctx, pod); err != nil {
		return err
	}
	switch out, err := a.evict(ctx, pod.UID, true); out {
	case evicted:
		return nil
	case gone:
		return fmt.Errorf("pod %s/%s no longer exists", a.ns, a.pod)
	case blocked:
		return handlers.Fail(vocab.ReasonPDBBlocked, "a PodDisruptionBudget would refuse the eviction now: %v", err)
	default:
		return err
	}
}

type evictOutcome int

const (
	evicted evictOutcome = iota
	gone                 // 404, or 409 on the UID precondition: the pod we meant is no more
	blocked              // 429: a PodDisruptionBudget (or the API server's flow control) refuses for now
	failed
)

func (a *RestartAction) evict(ctx context.Context, uid types.UID, dry bool) (evictOutcome, error) {
	opts := &metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}}
	if dry {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	err := a.h.client.CoreV1().Pods(a.ns).EvictV1(ctx, &policyv1.Eviction{
		ObjectMeta:    metav1.ObjectMeta{Name: a.pod, Namespace: a.ns},
		DeleteOptions: opts,
	})
	c := call{verb: "create", resource: "pods/eviction", namespace: a.ns, name: a.pod}
	switch {
	case err == nil:
		return evicted, nil
	// An answer from the API server is taken as it is, even if the context ended meanwhile: a
	// refusal (429) evicted nothing.
	case apierrors.IsNotFound(err), apierrors.IsConflict(err):
		return gone, err
	case apierrors.IsTooManyRequests(err):
		return blocked, err
	case ctx.Err() != nil:
		return failed, apiError(ctx, c, err)
	case apierrors.IsInternalError(err) && strings.Contains(err.Error(), "more than one PodDisruptionBudget"):
		return failed, &handlers.Error{Reason: vocab.ReasonPDBBlocked,
			Err: fmt.Errorf("%s: several PodDisruptionBudgets select the pod and the Eviction API refuses it; fix the budgets: %w", c, err)}
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code == 500 && strings.Contains(status.Status().Message, "more than one PodDisruptionBudget") {
		return failed, &handlers.Error{Reason: vocab.ReasonPDBBlocked,
			Err: fmt.Errorf("%s: several PodDisruptionBudgets select the pod and the Eviction API refuses it; fix the budgets: %w", c, err)}
	}
	return failed, apiError(ctx, c, err)
}

// Do evicts the pod, retrying budget refusals for retry_for, records an Event on the workload and
// verifies the workload recovers. A pod already gone or terminating, or created after the alert
// started (a new incarnation), is not evicted: Do verifies only. Interrupted (handlers.Interrupted),
// it stops at once, in the retry loop or the verify loop; an error before any eviction reached the
// API server says so (handlers.NoEffect).
func (a *RestartAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	res, err := handlers.TrackEffect(func(sent *bool) (handlers.Result, error) { return a.do(ctx, inv, al, sent) })
	if err == nil {
		w, _ := res.Fields["workload"].(string) // set by verify
		res.Fields = map[string]any{"pod": a.pod, "workload": w}
	}
	return res, err
}

func (a *RestartAction) do(ctx context.Context, inv handlers.Invocation, al alert.Alert, sent *bool) (handlers.Result, error) {
	if err := a.h.configured(); err != nil {
		return handlers.Result{}, err
	}
	h := a.h
	pod, err := h.getPod(ctx, a.ns, a.pod)
	if err != nil {
		return handlers.Result{}, err
	}
	if res, done, err := a.replaced(ctx, pod, al); done {
		return res, err
	}
	p, err := a.preconditions(ctx, pod)
	if err != nil {
		return handlers.Result{}, err
	}
	about := why(inv, al)
	if err := a.evictRetrying(ctx, inv, p, about, sent); err != nil {
		return handlers.Result{}, err
	}
	// The Event is part of the eviction: it is recorded even when an interruption came meanwhile.
	ectx, cancel := handlers.StepContext(ctx)
	defer cancel()
	if p.st == nil {
		h.record(ectx, inv, corev1.ObjectReference{APIVersion: "v1", Kind: "Pod", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID}, event{typ: eventTypeNormal, reason: ReasonRestart, action: "Evict",
			message: fmt.Sprintf("responder evicted standalone pod %s (%s); nothing recreates it", a.pod, about)})
		return handlers.Result{Detail: fmt.Sprintf("evicted standalone pod %s/%s; nothing recreates it", a.ns, a.pod)}, nil
	}
	h.record(ectx, inv, refOf(p.st.obj), event{typ: eventTypeNormal, reason: ReasonRestart, action: "Evict",
		message: fmt.Sprintf("responder evicted pod %s to restart it (%s)", a.pod, about)})
	return a.verify(ctx, p.w, pod.UID, "evicted pod "+a.pod)
}

// replaced answers for a pod that needs no eviction: already gone, already terminating, or
// created after the alert started (a new incarnation). Then done is true and Do verifies only.
func (a *RestartAction) replaced(ctx context.Context, pod *corev1.Pod, al alert.Alert) (res handlers.Result, done bool, err error) {
	h := a.h
	switch {
	case pod == nil:
		w, ok := h.cachedOwner(a.ns, a.pod)
		if !ok {
			return handlers.Result{Detail: fmt.Sprintf("pod %s/%s is already gone; its workload is unknown, nothing to verify", a.ns, a.pod)}, true, nil
		}
		res, err = a.verify(ctx, w, "", fmt.Sprintf("pod %s was already gone", a.pod))
		return res, true, err
	case pod.DeletionTimestamp != nil:
		w, err := h.owner(ctx, pod)
		if err != nil {
			return handlers.Result{Detail: fmt.Sprintf("pod %s/%s is already terminating; not evicted", a.ns, a.pod)}, true, nil //nolint:nilerr // nothing to verify
		}
		res, err = a.verify(ctx, w, pod.UID, fmt.Sprintf("pod %s was already terminating", a.pod))
		return res, true, err
	case !al.StartsAt.IsZero() && pod.CreationTimestamp.After(al.StartsAt):
		w, err := h.owner(ctx, pod)
		if err != nil {
			return handlers.Result{Detail: fmt.Sprintf("pod %s/%s was created after the alert started; not evicted", a.ns, a.pod)}, true, nil //nolint:nilerr // nothing to verify
		}
		res, err = a.verify(ctx, w, "", fmt.Sprintf("pod %s was created at %s, after the alert started: already replaced",
			a.pod, pod.CreationTimestamp.UTC().Format(time.RFC3339)))
		return res, true, err
	}
	return handlers.Result{}, false, nil
}

// evictRetrying evicts the planned pod, retrying refusals (429: a PodDisruptionBudget's, or the
// API server's flow control) with backoff until retry_for elapsed or the action's deadline leaves
// no time to retry and verify; then a Warning Event records the refusal and it fails with
// pdb_blocked (server_error for flow control). A pod gone meanwhile counts as evicted.
func (a *RestartAction) evictRetrying(ctx context.Context, inv handlers.Invocation, p *plan, about string, sent *bool) error {
	h := a.h
	log := h.log.With("handler", RestartPodName, "pod", a.ns+"/"+a.pod)
	start := h.now()
	bo := &backoff.ExponentialBackOff{InitialInterval: h.backoff, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: maxBackoff}
	bo.Reset()
	for attempt := 1; ; attempt++ {
		out, err := a.evict(ctx, p.pod.UID, false)
		*sent = out != blocked && out != gone // a refusal evicted nothing; neither did a pod already gone
		switch out {
		case evicted:
			log.InfoContext(ctx, "pod evicted", "attempt", attempt, "workload", p.w.String())
			return nil
		case gone:
			log.InfoContext(ctx, "pod already gone when evicting", "attempt", attempt, "err", err)
			return nil
		case failed:
			return err
		}
		elapsed := h.now().Sub(start)
		wait := bo.NextBackOff()
		if d, ok := apierrors.SuggestsClientDelay(err); ok && d > 0 {
			wait = max(wait, time.Duration(d)*time.Second)
		}
		wait = min(wait, max(a.retryFor-elapsed, 0))
		if giveUp := a.giveUp(ctx, elapsed, wait); giveUp != "" {
			reason := vocab.ReasonPDBBlocked
			if !isBudgetRefusal(err) {
				reason = vocab.ReasonServerError
			}
			if p.st != nil {
				h.record(ctx, inv, refOf(p.st.obj), event{typ: eventTypeWarning, reason: ReasonRestartBlocked, action: "Evict",
					message: fmt.Sprintf("responder could not evict pod %s (%s): %d attempts refused over %s: %v", a.pod, about, attempt, elapsed.Round(time.Second), err)})
			}
			return &handlers.Error{Reason: reason,
				Err: fmt.Errorf("eviction of pod %s/%s refused %d times over %s (%s): %w", a.ns, a.pod, attempt, elapsed.Round(time.Second), giveUp, err)}
		}
		log.InfoContext(ctx, "eviction refused, retrying", "attempt", attempt, "wait_seconds", wait.Seconds(), "err", err)
		if serr := h.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("eviction of pod %s/%s refused %d times: %w; not retried: %w", a.ns, a.pod, attempt, err, serr)
		}
	}
}

// giveUp says why a refused eviction is not retried after elapsed and a wait of wait: retry_for
// elapsed, or no time left in the action's timeout to retry and verify; "" retries.
func (a *RestartAction) giveUp(ctx context.Context, elapsed, wait time.Duration) string {
	switch dl, ok := ctx.Deadline(); {
	case elapsed >= a.retryFor || wait <= 0:
		return "retry_for " + a.retryFor.String() + " elapsed"
	case ok && a.h.now().Add(wait+a.verifyTimeout).After(dl):
		return "no time left in the action's timeout to retry and verify"
	}
	return ""
}

// isBudgetRefusal tells a PodDisruptionBudget's 429 from API flow control's.
func isBudgetRefusal(err error) bool {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return false
	}
	s := status.Status()
	if s.Details != nil {
		for _, c := range s.Details.Causes {
			if c.Type == policyv1.DisruptionBudgetCause {
				return true
			}
		}
	}
	return strings.Contains(s.Message, "disruption budget")
}

// verify waits up to verify_timeout for the workload to have as many ready pods (not counting the
// evicted one, by UID) as it desires.
func (a *RestartAction) verify(ctx context.Context, w workload, evictedUID types.UID, did string) (handlers.Result, error) {
	h := a.h
	start := h.now()
	deadline := verifyDeadline(ctx, start, a.verifyTimeout)
	var last string
	for {
		st, err := h.get(ctx, w)
		if err == nil {
			var n int
			if n, err = h.readyPods(ctx, w, st.selector, evictedUID); err == nil {
				last = fmt.Sprintf("%d of %d desired replicas ready", n, st.desired)
				if n >= st.desired {
					return handlers.Result{Detail: fmt.Sprintf("%s; %s recovered: %s after %s", did, w, last, h.now().Sub(start).Round(time.Second)),
						Fields: map[string]any{"workload": w.String()}}, nil
				}
			}
		}
		if err != nil {
			if r := handlers.ReasonOf(err); r == vocab.ReasonClientError || ctx.Err() != nil {
				return handlers.Result{}, fmt.Errorf("%s; verifying %s: %w", did, w, err)
			}
			last = err.Error()
		}
		left := deadline.Sub(h.now())
		if left <= 0 {
			return handlers.Result{}, handlers.Fail(vocab.ReasonNotRecovered, "%s; %s did not recover within verify_timeout %s: %s", did, w, a.verifyTimeout, last)
		}
		if err := h.sleep(ctx, min(h.poll, left)); err != nil {
			return handlers.Result{}, fmt.Errorf("%s; verifying %s (%s): %w", did, w, last, err)
		}
	}
}

// verifyDeadline is start+timeout, or a little before the action's own deadline when that comes
// first, so an unrecovered workload fails with not_recovered rather than timeout.
func verifyDeadline(ctx context.Context, start time.Time, timeout time.Duration) time.Time {
	d := start.Add(timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Add(-verifyMargin).Before(d) {
		d = dl.Add(-verifyMargin)
	}
	return d
}

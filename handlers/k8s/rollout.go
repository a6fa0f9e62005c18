package k8s

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// RolloutRestart is the k8s.rollout_restart handler: `kubectl rollout restart` of one workload.
type RolloutRestart struct{ *base }

var (
	_ handlers.Handler         = (*RolloutRestart)(nil)
	_ handlers.StaticValidator = (*RolloutRestart)(nil)
	_ handlers.Resolver        = (*RolloutAction)(nil)
)

var rolloutKinds = []string{Deployment, StatefulSet, DaemonSet}

const rolloutExample = `rules:
  - name: backend-down-restart
    when: alert.name == "BackendDown" && alert.status == "firing"
    for: 1m
    cooldown: 30m
    actions:
      - handler: k8s.rollout_restart
        params: {namespace: shop, kind: Deployment, name: backend}
        approval: none
    escalate:
      - handler: page.webhook
        params: {summary: "backend still down after a rollout restart"}
`

// Spec describes k8s.rollout_restart.
func (h *RolloutRestart) Spec() handlers.Spec {
	return handlers.Spec{
		Name: RolloutRestartName,
		Doc: "Restarts every pod of a Deployment, StatefulSet or DaemonSet like `kubectl rollout restart` " +
			"(the pod-template annotation kubectl.kubernetes.io/restartedAt), once per incident; refuses paused " +
			"Deployments and OnDelete update strategies; then waits up to verify_timeout for the rollout " +
			"to finish like `kubectl rollout status` (else not_recovered). Rollouts do not honour " +
			"PodDisruptionBudgets (only maxUnavailable), so approval is required by default.",
		Params: []handlers.Param{
			{Name: "namespace", Type: handlers.String, Required: true, Target: true, Doc: "the workload's namespace; must be in handlers.kubernetes.namespaces"},
			{Name: "kind", Type: handlers.String, Target: true, Doc: "Deployment, StatefulSet or DaemonSet (with name)"},
			{Name: "name", Type: handlers.String, Target: true, Doc: "the workload's name (with kind)"},
			{Name: "pod", Type: handlers.String, Target: true, Doc: "instead of kind and name: a pod whose owning workload is restarted"},
			{Name: "verify_timeout", Type: handlers.Duration, Doc: "how long to wait for the rollout to finish; default 5m"},
		},
		Class:           vocab.ClassDisruptive,
		DefaultApproval: handlers.ApprovalRequired,
		DefaultTimeout:  DefaultRolloutVerifyTimeout + slack,
		Target:          "namespace/Kind/name of the workload",
		Scope:           "namespace",
		RBAC: []handlers.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments", "statefulsets", "daemonsets"}, Verbs: []string{"get", "patch"}},
			{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}},
			{APIGroups: []string{"apps"}, Resources: []string{"replicasets"}, Verbs: []string{"get"}},
		},
		Example: rolloutExample,
		Results: []handlers.ResultField{
			{Name: "workload", Type: handlers.String, Doc: "the workload restarted, namespace/Kind/name (its pod's owner when given pod)"},
		},
	}
}

// ValidateStatic checks the literal params of a rule.
func (h *RolloutRestart) ValidateStatic(raw handlers.Params) error {
	_, err := h.parse(raw, true)
	return err
}

// Build validates rendered params.
func (h *RolloutRestart) Build(p handlers.Params) (handlers.Action, error) {
	return h.parse(p, false)
}

func (h *RolloutRestart) parse(p handlers.Params, static bool) (*RolloutAction, error) {
	r := newReader(p, static)
	a := &RolloutAction{h: h}
	a.w.Namespace = r.namespace(h.base)
	_, hasKind, _ := r.Raw("kind")
	_, hasName, _ := r.Raw("name")
	_, hasPod, _ := r.Raw("pod")
	switch {
	case hasPod && (hasKind || hasName):
		r.Failf("give either pod, or kind and name, not both")
	case hasPod:
		a.pod = r.object("pod")
	case hasKind && hasName:
		a.w.Kind = r.kind(rolloutKinds...)
		a.w.Name = r.object("name")
	default:
		r.Failf("give kind and name, or pod")
	}
	a.verifyTimeout = r.Duration("verify_timeout", DefaultRolloutVerifyTimeout)
	if err := r.Err(); err != nil {
		return nil, err
	}
	if !static && a.w.Namespace == "" {
		return nil, handlers.Fail(vocab.ReasonBadParam, "param \"namespace\" is required")
	}
	return a, nil
}

// RolloutAction is one built k8s.rollout_restart.
type RolloutAction struct {
	h             *RolloutRestart
	w             workload // Kind and Name empty until resolved when given a pod
	pod           string
	verifyTimeout time.Duration

	mu sync.Mutex
}

// Scope is the namespace.
func (a *RolloutAction) Scope() string { return a.w.Namespace }

// Resolve looks up the workload of the pod, when the action names a pod.
func (a *RolloutAction) Resolve(ctx context.Context) error {
	_, err := a.workload(ctx)
	return err
}

func (a *RolloutAction) workload(ctx context.Context) (workload, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w.Kind != "" {
		return a.w, nil
	}
	if err := a.h.configured(); err != nil {
		return workload{}, err
	}
	if w, ok := a.h.cachedOwner(a.w.Namespace, a.pod); ok && w.Kind != ReplicaSet {
		a.w = w
		return w, nil
	}
	pod, err := a.h.getPod(ctx, a.w.Namespace, a.pod)
	if err != nil {
		return workload{}, err
	}
	if pod == nil {
		return workload{}, handlers.Fail(vocab.ReasonClientError, "pod %s/%s does not exist; its workload is unknown", a.w.Namespace, a.pod)
	}
	w, err := a.h.owner(ctx, pod)
	if err != nil {
		if handlers.ReasonOf(err) != vocab.ReasonError {
			return workload{}, err
		}
		return workload{}, refuse("%v", err)
	}
	if w.Kind == ReplicaSet {
		return workload{}, refuse("pod %s/%s belongs to bare ReplicaSet %s, which cannot be rollout-restarted", a.w.Namespace, a.pod, w.Name)
	}
	a.w = w
	return w, nil
}

// Target is "namespace/Kind/name"; for a pod param it is the workload Resolve found, like
// k8s.restart_pod's, and "namespace/Pod/name" until Resolve succeeded. It makes no lookup of its
// own.
func (a *RolloutAction) Target() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.w.Kind == "" {
		return a.w.Namespace + "/Pod/" + a.pod
	}
	return a.w.String()
}

// key is the restart key recorded on the workload: one rollout restart per incident (or per
// action when there is no incident); "" when inv has neither.
func key(inv handlers.Invocation) string {
	if id := inv.IncidentID; id != 0 {
		return "incident-" + strconv.FormatInt(id, 10)
	}
	return inv.IdempotencyKey
}

// prepare reads the workload and refuses what cannot be restarted.
func (a *RolloutAction) prepare(ctx context.Context) (workload, *state, error) {
	w, err := a.workload(ctx)
	if err != nil {
		return w, nil, err
	}
	st, err := a.h.get(ctx, w)
	if err != nil {
		return w, nil, err
	}
	switch {
	case st.paused:
		return w, nil, refuse("deployment %s is paused (kubectl rollout resume first)", w)
	case st.onDelete:
		return w, nil, refuse("%s uses the OnDelete update strategy: a rollout restart would restart no pod", w)
	}
	return w, st, nil
}

// patch returns the strategic-merge patch kubectl rollout restart sends, plus the restart key
// annotation on the workload and its resourceVersion, so a concurrent change conflicts.
func restartPatch(at time.Time, key, resourceVersion string) []byte {
	meta := map[string]any{"resourceVersion": resourceVersion}
	if key != "" {
		meta["annotations"] = map[string]string{AnnotationRestartKey: key}
	}
	b, _ := json.Marshal(map[string]any{
		"metadata": meta,
		"spec": map[string]any{"template": map[string]any{"metadata": map[string]any{
			"annotations": map[string]string{AnnotationRestartedAt: at.Format(time.RFC3339)},
		}}},
	})
	return b
}

func (a *RolloutAction) patch(ctx context.Context, w workload, data []byte, dry bool) (*state, error) {
	opts := metav1.PatchOptions{FieldManager: Component}
	if dry {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	apps := a.h.client.AppsV1()
	var (
		st  *state
		err error
	)
	switch w.Kind {
	case Deployment:
		d, perr := apps.Deployments(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, data, opts)
		if err = perr; err == nil {
			st = deploymentState(d)
		}
	case StatefulSet:
		s, perr := apps.StatefulSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, data, opts)
		if err = perr; err == nil {
			st = statefulSetState(s)
		}
	case DaemonSet:
		d, perr := apps.DaemonSets(w.Namespace).Patch(ctx, w.Name, types.StrategicMergePatchType, data, opts)
		if err = perr; err == nil {
			st = daemonSetState(d)
		}
	default:
		return nil, fmt.Errorf("unsupported kind %q", w.Kind)
	}
	if err != nil {
		return nil, err // mapped by the caller, which tells a conflict apart
	}
	return st, nil
}

// Check reads the workload, refuses what Do would refuse and sends the patch as a server-side
// dry run (DryRun: All).
func (a *RolloutAction) Check(ctx context.Context, _ alert.Alert) error {
	if err := a.h.configured(); err != nil {
		return err
	}
	w, st, err := a.prepare(ctx)
	if err != nil {
		return err
	}
	m, _ := st.obj.(metav1.Object)
	if _, err := a.patch(ctx, w, restartPatch(a.h.now(), "", m.GetResourceVersion()), true); err != nil {
		return apiError(ctx, call{verb: "patch", resource: w.resource(), namespace: w.Namespace, name: w.Name}, err)
	}
	return nil
}

// Do patches the workload once per key (a second Do with the same incident or key only
// verifies), records an Event and waits for the rollout. Interrupted, it stops at once; an error
// before the patch was sent says so (handlers.NoEffect).
func (a *RolloutAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	return handlers.TrackEffect(func(sent *bool) (handlers.Result, error) { return a.do(ctx, inv, al, sent) })
}

func (a *RolloutAction) do(ctx context.Context, inv handlers.Invocation, al alert.Alert, sent *bool) (handlers.Result, error) {
	if err := a.h.configured(); err != nil {
		return handlers.Result{}, err
	}
	k := key(inv)
	for attempt := 1; ; attempt++ {
		w, st, err := a.prepare(ctx)
		if err != nil {
			return handlers.Result{}, err
		}
		if k != "" && st.annotations[AnnotationRestartKey] == k {
			*sent = true // restarted by this incident's earlier try: its effect is there
			return a.verify(ctx, w, st.generation, "already restarted for "+k)
		}
		m, _ := st.obj.(metav1.Object)
		now := a.h.now()
		patched, err := a.patch(ctx, w, restartPatch(now, k, m.GetResourceVersion()), false)
		*sent = !apierrors.IsConflict(err) // a conflict patched nothing
		if apierrors.IsConflict(err) && attempt < 3 {
			continue // changed under us (another replica?): re-read; the key tells whether it was us
		}
		if err != nil {
			return handlers.Result{}, apiError(ctx, call{verb: "patch", resource: w.resource(), namespace: w.Namespace, name: w.Name}, err)
		}
		a.h.log.InfoContext(ctx, "rollout restarted", "handler", RolloutRestartName, "workload", w.String(), "key", k)
		ectx, cancel := handlers.StepContext(ctx) // the Event is part of the patch step
		defer cancel()
		a.h.record(ectx, inv, refOf(patched.obj), event{typ: eventTypeNormal, reason: ReasonRolloutRestart, action: "RolloutRestart",
			message: fmt.Sprintf("responder restarted the rollout of %s %s (%s)", w.Kind, w.Name, why(inv, al))})
		return a.verify(ctx, w, patched.generation, "restarted at "+now.Format(time.RFC3339))
	}
}

// verify waits until the rollout of generation gen finished.
func (a *RolloutAction) verify(ctx context.Context, w workload, gen int64, did string) (handlers.Result, error) {
	h := a.h
	start := h.now()
	deadline := verifyDeadline(ctx, start, a.verifyTimeout)
	var last string
	for {
		st, err := h.get(ctx, w)
		if err == nil {
			last = st.progress
			switch {
			case st.failed:
				return handlers.Result{}, handlers.Fail(vocab.ReasonNotRecovered, "%s; rollout of %s failed: %s", did, w, last)
			case st.generation >= gen && st.done:
				return handlers.Result{Detail: fmt.Sprintf("%s; rollout of %s done: %s after %s", did, w, last, h.now().Sub(start).Round(time.Second)),
					Fields: map[string]any{"workload": w.String()}}, nil
			}
		} else {
			if handlers.ReasonOf(err) == vocab.ReasonClientError || ctx.Err() != nil {
				return handlers.Result{}, fmt.Errorf("%s; verifying %s: %w", did, w, err)
			}
			last = err.Error()
		}
		left := deadline.Sub(h.now())
		if left <= 0 {
			return handlers.Result{}, handlers.Fail(vocab.ReasonNotRecovered, "%s; rollout of %s not done within verify_timeout %s: %s", did, w, a.verifyTimeout, last)
		}
		if err := h.sleep(ctx, min(h.poll, left)); err != nil {
			return handlers.Result{}, errors.Join(fmt.Errorf("%s; verifying %s (%s)", did, w, last), err)
		}
	}
}

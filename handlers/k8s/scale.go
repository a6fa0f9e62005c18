package k8s

import (
	"context"
	"fmt"
	"strconv"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
	"github.com/responder-sre/responder/vocab"
)

// Scale is the k8s.scale handler: it sets a workload's replicas through the scale subresource.
type Scale struct{ *base }

var (
	_ handlers.Handler         = (*Scale)(nil)
	_ handlers.StaticValidator = (*Scale)(nil)
)

var scaleKinds = []string{Deployment, StatefulSet}

const scaleExample = `rules:
  - name: scale-checkout-on-saturation
    when: alert.name == "CheckoutSaturated" && alert.status == "firing"
    cooldown: 30m
    actions:
      - handler: k8s.scale
        params: {namespace: shop, kind: Deployment, name: checkout, delta: 2, min: 3, max: 12}
`

// Spec describes k8s.scale.
func (h *Scale) Spec() handlers.Spec {
	return handlers.Spec{
		Name: ScaleName,
		Doc: "Sets the replicas of a Deployment or StatefulSet through its scale subresource, to replicas or to " +
			"the current count plus delta; refuses a result outside [min, max], and zero unless allow_zero. " +
			"It changes capacity (and cost), so approval is required by default.",
		Params: []handlers.Param{
			{Name: "namespace", Type: handlers.String, Required: true, Target: true, Doc: "the workload's namespace; must be in handlers.kubernetes.namespaces"},
			{Name: "kind", Type: handlers.String, Required: true, Target: true, Doc: "Deployment or StatefulSet"},
			{Name: "name", Type: handlers.String, Required: true, Target: true, Doc: "the workload's name"},
			{Name: "replicas", Type: handlers.Int, Doc: "the replicas to set (or delta)"},
			{Name: "delta", Type: handlers.Int, Doc: "replicas to add (negative: remove) to the current count (or replicas)"},
			{Name: "min", Type: handlers.Int, Required: true, Doc: "the lowest replicas responder may set"},
			{Name: "max", Type: handlers.Int, Required: true, Doc: "the highest replicas responder may set"},
			{Name: "allow_zero", Type: handlers.Bool, Doc: "allow scaling to zero replicas; default false"},
		},
		Class:           vocab.ClassDisruptive,
		DefaultApproval: handlers.ApprovalRequired,
		DefaultTimeout:  slack,
		Target:          "namespace/Kind/name of the workload",
		Scope:           "namespace",
		RBAC: []handlers.PolicyRule{
			{APIGroups: []string{"apps"}, Resources: []string{"deployments/scale", "statefulsets/scale"}, Verbs: []string{"get", "update"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"list"}},
		},
		Example: scaleExample,
		Results: []handlers.ResultField{
			{Name: "replicas", Type: handlers.Int, Doc: "the replicas the workload has now"},
			{Name: "previous_replicas", Type: handlers.Int, Doc: "the replicas it had before (equal to replicas when it had them already)"},
		},
	}
}

// ValidateStatic checks the literal params of a rule.
func (h *Scale) ValidateStatic(raw handlers.Params) error {
	_, err := h.parse(raw, true)
	return err
}

// Build validates rendered params.
func (h *Scale) Build(p handlers.Params) (handlers.Action, error) {
	return h.parse(p, false)
}

func (h *Scale) parse(p handlers.Params, static bool) (*ScaleAction, error) {
	r := newReader(p, static)
	a := &ScaleAction{h: h}
	a.w.Namespace = r.namespace(h.base)
	a.w.Kind = r.kind(scaleKinds...)
	a.w.Name = r.object("name")
	k := a.readCounts(r)
	a.checkRange(r, k)
	a.checkTarget(r, k)
	if !static && (a.w.Namespace == "" || a.w.Kind == "" || a.w.Name == "" || !k.min || !k.max) && !r.Failed() {
		r.Failf("params \"namespace\", \"kind\", \"name\", \"min\" and \"max\" are required")
	}
	if err := r.Err(); err != nil {
		return nil, err
	}
	return a, nil
}

// scaleKnown says which of k8s.scale's integer params are known (literal, or rendered).
type scaleKnown struct{ replicas, min, max bool }

// readCounts reads replicas or delta (exactly one of them), min, max and allow_zero into a.
func (a *ScaleAction) readCounts(r reader) scaleKnown {
	_, hasReplicas, _ := r.Raw("replicas")
	_, hasDelta, _ := r.Raw("delta")
	switch {
	case hasReplicas && hasDelta:
		r.Failf("give replicas or delta, not both")
	case !hasReplicas && !hasDelta:
		r.Failf("give replicas or delta")
	}
	var k scaleKnown
	a.replicas, k.replicas = r.Int("replicas")
	a.delta, _ = r.Int("delta")
	a.hasDelta = hasDelta
	a.min, k.min = r.Int("min")
	a.max, k.max = r.Int("max")
	a.allowZero = r.Bool("allow_zero", false)
	return k
}

// checkRange checks the known ones of min and max: min ≥ 0, max ≥ 1, min ≤ max.
func (a *ScaleAction) checkRange(r reader, k scaleKnown) {
	if k.min && a.min < 0 {
		r.Failf("param \"min\" must not be negative, got %d", a.min)
	}
	if k.max && a.max < 1 {
		r.Failf("param \"max\" must be at least 1, got %d", a.max)
	}
	if k.min && k.max && a.max < a.min {
		r.Failf("param \"max\" (%d) is below \"min\" (%d)", a.max, a.min)
	}
}

// checkTarget refuses a literal zero delta, and known replicas outside the bounds (only negative
// or zero replicas while min or max is still unknown).
func (a *ScaleAction) checkTarget(r reader, k scaleKnown) {
	if a.hasDelta && a.delta == 0 && !r.Failed() {
		if _, _, known := r.Raw("delta"); known {
			r.Failf("param \"delta\" is 0: nothing to do")
		}
	}
	if k.replicas {
		if err := a.bounds(a.replicas); err != nil && (k.min && k.max || a.replicas < 0 || a.replicas == 0) {
			r.Failf("param \"replicas\": %w", err)
		}
	}
}

// ScaleAction is one built k8s.scale.
type ScaleAction struct {
	h         *Scale
	w         workload
	replicas  int
	delta     int
	hasDelta  bool
	min, max  int
	allowZero bool
}

// Target is "namespace/Kind/name".
func (a *ScaleAction) Target() string { return a.w.String() }

// Scope is the namespace.
func (a *ScaleAction) Scope() string { return a.w.Namespace }

// bounds refuses n outside [min, max], and zero unless allow_zero.
func (a *ScaleAction) bounds(n int) error {
	switch {
	case n < 0:
		return fmt.Errorf("%d replicas is negative", n)
	case n == 0 && !a.allowZero:
		return fmt.Errorf("scaling %s to zero needs allow_zero: true", a.w)
	case n < a.min:
		return fmt.Errorf("%d replicas is below min %d", n, a.min)
	case n > a.max:
		return fmt.Errorf("%d replicas is above max %d", n, a.max)
	}
	return nil
}

func (a *ScaleAction) getScale(ctx context.Context) (*autoscalingv1.Scale, error) {
	var (
		s   *autoscalingv1.Scale
		err error
	)
	switch a.w.Kind {
	case Deployment:
		s, err = a.h.client.AppsV1().Deployments(a.w.Namespace).GetScale(ctx, a.w.Name, metav1.GetOptions{})
	case StatefulSet:
		s, err = a.h.client.AppsV1().StatefulSets(a.w.Namespace).GetScale(ctx, a.w.Name, metav1.GetOptions{})
	}
	if err != nil {
		return nil, apiError(ctx, call{verb: "get", resource: a.w.resource() + "/scale", namespace: a.w.Namespace, name: a.w.Name}, err)
	}
	return s, nil
}

func (a *ScaleAction) updateScale(ctx context.Context, s *autoscalingv1.Scale, dry bool) (*autoscalingv1.Scale, error) {
	opts := metav1.UpdateOptions{FieldManager: Component}
	if dry {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	switch a.w.Kind {
	case Deployment:
		return a.h.client.AppsV1().Deployments(a.w.Namespace).UpdateScale(ctx, a.w.Name, s, opts)
	default:
		return a.h.client.AppsV1().StatefulSets(a.w.Namespace).UpdateScale(ctx, a.w.Name, s, opts)
	}
}

// want returns the replicas to set given the current ones: an earlier run's target for the
// idempotency key (so a delta is never applied twice), else replicas, else current+delta; refused
// outside bounds.
func (a *ScaleAction) want(ctx context.Context, key string, current int) (int, string, error) {
	n, how := a.replicas, "replicas "+strconv.Itoa(a.replicas)
	if a.hasDelta {
		n, how = current+a.delta, fmt.Sprintf("%d%+d", current, a.delta)
		if prev, ok, err := a.previous(ctx, key); err != nil {
			return 0, "", err
		} else if ok {
			n, how = prev, "replicas "+strconv.Itoa(prev)+" set earlier for this action"
		}
	}
	if err := a.bounds(n); err != nil {
		return 0, "", refuse("%s: %v", how, err)
	}
	return n, how, nil
}

// previous finds the target an earlier run of this action (same idempotency key k) recorded in
// its Event.
func (a *ScaleAction) previous(ctx context.Context, k string) (int, bool, error) {
	if !labelValue.MatchString(k) {
		return 0, false, nil
	}
	sel := labels.Set{LabelKey: k}.String()
	list, err := a.h.client.CoreV1().Events(a.w.Namespace).List(ctx, metav1.ListOptions{LabelSelector: sel})
	if err != nil {
		return 0, false, apiError(ctx, call{verb: "list", resource: "events", namespace: a.w.Namespace}, err)
	}
	for _, e := range list.Items {
		if e.Reason != ReasonScale || e.InvolvedObject.Kind != a.w.Kind || e.InvolvedObject.Name != a.w.Name {
			continue
		}
		if n, err := strconv.Atoi(e.Annotations[annotationScaleTarget]); err == nil {
			return n, true, nil
		}
	}
	return 0, false, nil
}

// Check reads the scale, applies the bounds and sends the update as a server-side dry run.
func (a *ScaleAction) Check(ctx context.Context, _ alert.Alert) error {
	if err := a.h.configured(); err != nil {
		return err
	}
	s, err := a.getScale(ctx)
	if err != nil {
		return err
	}
	n, _, err := a.want(ctx, "", int(s.Spec.Replicas))
	if err != nil {
		return err
	}
	s.Spec.Replicas = int32(n)
	if _, err := a.updateScale(ctx, s, true); err != nil {
		return apiError(ctx, call{verb: "update", resource: a.w.resource() + "/scale", namespace: a.w.Namespace, name: a.w.Name}, err)
	}
	return nil
}

// Do sets the replicas (nothing when already there) and records an Event on the workload.
// Interrupted, it stops at once; an error before the update was sent says so (handlers.NoEffect).
func (a *ScaleAction) Do(ctx context.Context, inv handlers.Invocation, al alert.Alert) (handlers.Result, error) {
	return handlers.TrackEffect(func(sent *bool) (handlers.Result, error) { return a.do(ctx, inv, al, sent) })
}

func (a *ScaleAction) do(ctx context.Context, inv handlers.Invocation, al alert.Alert, sent *bool) (handlers.Result, error) {
	if err := a.h.configured(); err != nil {
		return handlers.Result{}, err
	}
	for attempt := 1; ; attempt++ {
		s, err := a.getScale(ctx)
		if err != nil {
			return handlers.Result{}, err
		}
		current := int(s.Spec.Replicas)
		n, how, err := a.want(ctx, inv.IdempotencyKey, current)
		if err != nil {
			return handlers.Result{}, err
		}
		if n == current {
			return handlers.Result{Detail: fmt.Sprintf("%s already has %d replicas (%s)", a.w, n, how),
				Fields: map[string]any{"replicas": n, "previous_replicas": current}}, nil
		}
		s.Spec.Replicas = int32(n)
		_, err = a.updateScale(ctx, s, false)
		*sent = !apierrors.IsConflict(err) // a conflict updated nothing
		if err != nil {
			if apierrors.IsConflict(err) && attempt < 3 {
				continue // changed under us (an autoscaler?): re-read and recompute
			}
			return handlers.Result{}, apiError(ctx, call{verb: "update", resource: a.w.resource() + "/scale", namespace: a.w.Namespace, name: a.w.Name}, err)
		}
		a.h.log.InfoContext(ctx, "scaled", "handler", ScaleName, "workload", a.w.String(), "from", current, "to", n)
		ref := corev1.ObjectReference{APIVersion: "apps/v1", Kind: a.w.Kind, Namespace: a.w.Namespace, Name: a.w.Name, UID: s.UID}
		ectx, cancel := handlers.StepContext(ctx) // the Event records the target for a later try: part of the step
		defer cancel()
		a.h.record(ectx, inv, ref, event{typ: eventTypeNormal, reason: ReasonScale, action: "Scale",
			message:     fmt.Sprintf("responder scaled %s %s from %d to %d replicas (%s; %s)", a.w.Kind, a.w.Name, current, n, how, why(inv, al)),
			annotations: map[string]string{annotationScaleTarget: strconv.Itoa(n)}})
		return handlers.Result{Detail: fmt.Sprintf("scaled %s from %d to %d replicas (%s)", a.w, current, n, how),
			Fields: map[string]any{"replicas": n, "previous_replicas": current}}, nil
	}
}

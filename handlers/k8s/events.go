package k8s

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"unicode/utf8"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/handlers"
)

// Event reasons.
const (
	ReasonRestart         = "ResponderRestart"
	ReasonRestartBlocked  = "ResponderRestartBlocked"
	ReasonRolloutRestart  = "ResponderRolloutRestart"
	ReasonScale           = "ResponderScale"
	maxEventMessage       = 1024
	eventTypeNormal       = corev1.EventTypeNormal
	eventTypeWarning      = corev1.EventTypeWarning
	annotationScaleTarget = "responder.io/scale-to"
)

// event describes one Event responder records on an object.
type event struct {
	typ, reason, action, message string
	annotations                  map[string]string
}

// why renders "incident 42, alert KubePodCrashLooping" for Event messages.
func why(inv handlers.Invocation, a alert.Alert) string {
	s := ""
	if id := inv.IncidentID; id != 0 {
		s = "incident " + strconv.FormatInt(id, 10)
	}
	if a.Name != "" {
		if s != "" {
			s += ", "
		}
		s += "alert " + a.Name
	}
	if s == "" {
		return "no incident"
	}
	return s
}

var labelValue = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

// refOf returns the Event reference of a typed object whose TypeMeta is set.
func refOf(obj runtime.Object) corev1.ObjectReference {
	m, err := meta.Accessor(obj)
	if err != nil {
		return corev1.ObjectReference{}
	}
	gvk := obj.GetObjectKind().GroupVersionKind()
	return corev1.ObjectReference{APIVersion: gvk.GroupVersion().String(), Kind: gvk.Kind,
		Namespace: m.GetNamespace(), Name: m.GetName(), UID: m.GetUID()}
}

// record creates a core/v1 Event on the object ref. It is best effort: a failure is logged, never
// fails the action (the action's own record is in responder's store). The Event is labelled with
// inv's incident and idempotency key.
func (b *base) record(ctx context.Context, inv handlers.Invocation, ref corev1.ObjectReference, e event) {
	if ref.Name == "" {
		return
	}
	now := metav1.NewTime(b.now())
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// client-go's recorder names Events the same way.
			Name:        fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()),
			Namespace:   ref.Namespace,
			Labels:      map[string]string{"app.kubernetes.io/managed-by": Component},
			Annotations: e.annotations,
		},
		InvolvedObject:      ref,
		Reason:              e.reason,
		Message:             truncate(e.message, maxEventMessage),
		Type:                e.typ,
		Action:              e.action,
		Source:              corev1.EventSource{Component: Component, Host: b.instance},
		FirstTimestamp:      now,
		LastTimestamp:       now,
		Count:               1,
		ReportingController: Component,
		ReportingInstance:   truncate(b.instance, 128),
	}
	if id := inv.IncidentID; id != 0 {
		ev.Labels[LabelIncident] = strconv.FormatInt(id, 10)
	}
	if k := inv.IdempotencyKey; labelValue.MatchString(k) {
		ev.Labels[LabelKey] = k
	}
	if _, err := b.client.CoreV1().Events(ev.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		b.log.WarnContext(ctx, "could not record a kubernetes event", "object", ref.Namespace+"/"+ref.Kind+"/"+ref.Name,
			"event_reason", e.reason, "err", apiError(ctx, call{verb: "create", resource: "events", namespace: ev.Namespace}, err))
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

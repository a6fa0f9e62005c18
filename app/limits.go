package app

import (
	"context"
	"errors"
	"maps"
	"slices"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/config"
)

// alertLimits turns the limits: section into the bounds every alert is checked against.
func alertLimits(l config.LimitsConfig) alert.Limits {
	return alert.Limits{
		MaxLabels:           l.MaxLabelsPerAlert,
		MaxLabelNameBytes:   int(l.MaxLabelNameBytes),
		MaxLabelValueBytes:  int(l.MaxLabelValueBytes),
		MaxAnnotationsBytes: int(l.MaxAnnotationsBytes),
	}
}

// publishWithinLimits publishes probe alerts under the same bounds as the webhook's: an alert over
// limits:, or one the bus refuses by itself (larger than its maximum payload), is rejected
// (counted, logged, audited) and the others are published. Only a transient bus error is returned,
// so that the probes keep their alerts pending and retry them.
func (a *App) publishWithinLimits(ctx context.Context, as []alert.Alert) error {
	l := alertLimits(a.conf().Limits)
	ok := make([]alert.Alert, 0, len(as))
	for _, al := range as {
		if err := l.Check(al); err != nil {
			ie, _ := errors.AsType[*alert.InvalidError](err)
			a.webhook.Reject(ctx, al, ie)
			continue
		}
		ok = append(ok, al)
	}
	err := a.bus.Publish(ctx, ok)
	if re, isRejected := errors.AsType[*alert.RejectedError](err); isRejected {
		for _, r := range re.Rejected {
			a.webhook.Reject(ctx, r.Alert, r.Err)
		}
		return nil
	}
	return err
}

// maxAuditedLabels bounds how many labels of a rejected alert the audit keeps.
const maxAuditedLabels = 100

// clipLabels returns labels with each name and value clipped (alert.Clip), at most
// maxAuditedLabels of them (the first by name): an audit entry stays small whatever was rejected.
func clipLabels(labels map[string]string) map[string]string {
	keys := slices.Sorted(maps.Keys(labels))
	if len(keys) > maxAuditedLabels {
		keys = keys[:maxAuditedLabels]
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		out[alert.Clip(k)] = alert.Clip(labels[k])
	}
	return out
}

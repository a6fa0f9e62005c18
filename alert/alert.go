// Package alert defines the Alert that flows through responder: from a source (the Alertmanager
// webhook or a health probe), over the bus, into the rules engine and the handlers.
//
// It is the innermost package: it imports nothing of responder's own, and everything else may
// import it. An Alert is a value; copy it freely.
package alert

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
)

// Status is the state of an alert as its source reports it.
type Status string

// The two statuses Alertmanager and probes use.
const (
	StatusFiring   Status = "firing"
	StatusResolved Status = "resolved"
)

// Sources of alerts.
const (
	SourceAlertmanager = "alertmanager"
	SourceProbe        = "probe"
)

// NameLabel is the label that names an alert.
const NameLabel = "alertname"

// Alert is one alert in one state. Name is the alertname label. Value is NaN when the source did not
// report one (JSON carries it as null).
type Alert struct {
	Name         string            `json:"name"`
	Source       string            `json:"source"`
	Status       Status            `json:"status"`
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Value        *float64          `json:"value,omitempty"`
	StartsAt     time.Time         `json:"startsAt"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
	Fingerprint  string            `json:"fingerprint"`
	// ReceivedAt is when responder accepted the alert (webhook answer or probe result). Staleness
	// (safety.max_alert_age) is measured from it.
	ReceivedAt time.Time `json:"receivedAt"`
	// Fence is the leader lease token under which a singleton source (the probes) produced the
	// alert; 0 for alerts from outside. The consumer refuses an alert whose token is lower than
	// one it already accepted: a deposed leader's late results are dropped.
	Fence int64 `json:"fence,omitempty"`
}

// ValueOrNaN returns the alert's value, or NaN when it has none.
func (a Alert) ValueOrNaN() float64 {
	if a.Value == nil {
		return math.NaN()
	}
	return *a.Value
}

// ActiveFor is how long the alert has been active at now (zero before StartsAt).
func (a Alert) ActiveFor(now time.Time) time.Duration {
	if a.StartsAt.IsZero() || now.Before(a.StartsAt) {
		return 0
	}
	return now.Sub(a.StartsAt)
}

// ID identifies one alert in one state: fingerprint, startsAt and status. Two deliveries of the same
// alert state have the same ID, whoever sends them.
func (a Alert) ID() string {
	return a.Fingerprint + "|" + a.StartsAt.UTC().Format(time.RFC3339Nano) + "|" + string(a.Status)
}

// Fingerprint computes the fingerprint of a label set exactly as Alertmanager does (a 16-digit hex
// string), so an alert keeps its identity whether or not the sender included one.
func Fingerprint(labels map[string]string) string {
	ls := make(model.LabelSet, len(labels))
	for k, v := range labels {
		ls[model.LabelName(k)] = model.LabelValue(v)
	}
	return ls.Fingerprint().String()
}

// BatchID returns a stable id for a group of alerts: the hash of their sorted IDs. The bus uses it
// as the message id, so a re-sent group is deduplicated whatever order its alerts come in. A probe
// alert's id also holds the time it was produced: a heartbeat of a firing probe is a new
// observation, not a re-send (a retried publication keeps its time, and is deduplicated).
func BatchID(alerts []Alert) string {
	ids := make([]string, len(alerts))
	for i, a := range alerts {
		ids[i] = a.ID()
		if a.Source == SourceProbe {
			ids[i] += "@" + a.ReceivedAt.UTC().Format(time.RFC3339Nano)
		}
	}
	slices.Sort(ids)
	h := sha256.New()
	for _, id := range ids {
		h.Write([]byte(id))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Rejection reasons, used as the reason label of responder_alerts_rejected_total.
const (
	ReasonMissingName     = "missing_alertname"
	ReasonInvalidStatus   = "invalid_status"
	ReasonMissingStartsAt = "missing_starts_at"
	ReasonInvalidLabel    = "invalid_label"
	ReasonInvalidText     = "invalid_annotation"
	// Size bounds (config limits:, see Limits). An alert over one is rejected by itself.
	ReasonTooManyLabels       = "too_many_labels"
	ReasonLabelNameTooLong    = "label_name_too_long"
	ReasonLabelValueTooLong   = "label_value_too_long"
	ReasonAnnotationsTooLarge = "annotations_too_large"
	// ReasonAlertTooLarge: the alert alone is larger than the bus's maximum message payload.
	ReasonAlertTooLarge = "alert_too_large"
	// ReasonTooManyAlerts: the request held more alerts than limits.max_alerts_per_request; the
	// whole request is refused (413), every alert of it counted.
	ReasonTooManyAlerts = "too_many_alerts"
)

// RejectReasons lists every rejection reason, so metrics can be pre-initialised.
var RejectReasons = []string{ReasonMissingName, ReasonInvalidStatus, ReasonMissingStartsAt, ReasonInvalidLabel, ReasonInvalidText,
	ReasonTooManyLabels, ReasonLabelNameTooLong, ReasonLabelValueTooLong, ReasonAnnotationsTooLarge, ReasonAlertTooLarge, ReasonTooManyAlerts}

// InvalidError says why an alert was rejected. Reason is one of the Reason* constants.
type InvalidError struct {
	Reason string
	Detail string
}

func (e *InvalidError) Error() string { return "invalid alert: " + e.Reason + ": " + e.Detail }

// Validate checks an alert and fills what can be derived: Name from the alertname label and the
// fingerprint from the labels. It returns an *InvalidError.
func (a *Alert) Validate() error {
	if a.Status != StatusFiring && a.Status != StatusResolved {
		return &InvalidError{ReasonInvalidStatus, fmt.Sprintf("status %q is neither firing nor resolved", a.Status)}
	}
	// Label names are UTF-8 (Prometheus 3, OTLP: "service.name"), as Alertmanager accepts them.
	// NUL cannot be stored (PostgreSQL text and jsonb refuse it): one such alert must not take its
	// whole group down with it.
	for k, v := range a.Labels {
		if !model.UTF8Validation.IsValidLabelName(k) || !model.LabelValue(v).IsValid() || strings.ContainsRune(k+v, 0) {
			return &InvalidError{ReasonInvalidLabel, fmt.Sprintf("label %q is not a valid label", Clip(k))}
		}
	}
	for k, v := range a.Annotations {
		if strings.ContainsRune(k+v, 0) {
			return &InvalidError{ReasonInvalidText, fmt.Sprintf("annotation %q contains a NUL character", Clip(k))}
		}
	}
	if strings.ContainsRune(a.GeneratorURL, 0) {
		return &InvalidError{ReasonInvalidText, "generatorURL contains a NUL character"}
	}
	name := a.Labels[NameLabel]
	if strings.TrimSpace(name) == "" {
		return &InvalidError{ReasonMissingName, "the alertname label is missing or empty"}
	}
	a.Name = name
	if a.StartsAt.IsZero() {
		return &InvalidError{ReasonMissingStartsAt, "startsAt is missing"}
	}
	// PostgreSQL keeps microseconds: normalise here so an alert has one identity everywhere.
	a.StartsAt = a.StartsAt.Truncate(time.Microsecond)
	a.EndsAt = a.EndsAt.Truncate(time.Microsecond)
	a.ReceivedAt = a.ReceivedAt.Truncate(time.Microsecond)
	// Always computed from the labels (as Alertmanager does), so an alert has one identity whether it
	// came through Alertmanager, `responder send` or a probe.
	a.Fingerprint = Fingerprint(a.Labels)
	return nil
}

// ErrInvalid matches any *InvalidError with errors.Is.
var ErrInvalid = errors.New("invalid alert")

// Is makes errors.Is(err, ErrInvalid) true for every *InvalidError.
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

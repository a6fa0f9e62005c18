package alert

import (
	"fmt"
	"unicode/utf8"
)

// Limits bounds the size of one alert (the config's limits: section). A zero field is no bound.
// The webhook and the probes check every alert against the same Limits, after Validate.
type Limits struct {
	MaxLabels           int // labels of one alert
	MaxLabelNameBytes   int // one label name
	MaxLabelValueBytes  int // one label value
	MaxAnnotationsBytes int // all annotations of one alert together, names and values
}

// Check returns an *InvalidError naming the first bound a exceeds, or nil.
func (l Limits) Check(a Alert) error {
	if l.MaxLabels > 0 && len(a.Labels) > l.MaxLabels {
		return &InvalidError{ReasonTooManyLabels, fmt.Sprintf("%d labels, more than limits.max_labels_per_alert %d", len(a.Labels), l.MaxLabels)}
	}
	for k, v := range a.Labels {
		if l.MaxLabelNameBytes > 0 && len(k) > l.MaxLabelNameBytes {
			return &InvalidError{ReasonLabelNameTooLong, fmt.Sprintf("label name %q is %d bytes, more than limits.max_label_name_bytes %d", Clip(k), len(k), l.MaxLabelNameBytes)}
		}
		if l.MaxLabelValueBytes > 0 && len(v) > l.MaxLabelValueBytes {
			return &InvalidError{ReasonLabelValueTooLong, fmt.Sprintf("label %q value is %d bytes, more than limits.max_label_value_bytes %d", Clip(k), len(v), l.MaxLabelValueBytes)}
		}
	}
	if l.MaxAnnotationsBytes > 0 {
		n := 0
		for k, v := range a.Annotations {
			n += len(k) + len(v)
		}
		if n > l.MaxAnnotationsBytes {
			return &InvalidError{ReasonAnnotationsTooLarge, fmt.Sprintf("annotations are %d bytes, more than limits.max_annotations_bytes %d", n, l.MaxAnnotationsBytes)}
		}
	}
	return nil
}

// clipBytes is how much of an offending name or value a rejection quotes: enough to recognise it,
// never the megabytes that got it rejected.
const clipBytes = 64

// Clip shortens s to at most 64 bytes (on a rune boundary) followed by "…" when it was longer.
func Clip(s string) string {
	if len(s) <= clipBytes {
		return s
	}
	i := clipBytes
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…"
}

// Rejection is one alert refused for good, and why.
type Rejection struct {
	Alert Alert
	Err   *InvalidError
}

// RejectedError is what a publisher (the bus) returns when it stored every alert it was given
// except Rejected, each refused by itself for good (ReasonAlertTooLarge): retrying cannot store
// them, and the others are durable. Callers report the rejections and treat the rest as accepted.
type RejectedError struct {
	Rejected []Rejection
}

func (e *RejectedError) Error() string {
	switch len(e.Rejected) {
	case 0:
		return "no alert rejected"
	case 1:
		return "1 alert rejected: " + e.Rejected[0].Err.Error()
	}
	return fmt.Sprintf("%d alerts rejected, the first: %v", len(e.Rejected), e.Rejected[0].Err)
}

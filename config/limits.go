package config

// LimitsConfig bounds the size of what responder takes in (the limits: section). Each bound
// rejects only what exceeds it, counted in responder_alerts_rejected_total{reason} and audited;
// 0 means no bound. The defaults (DefaultLimits) stay clear of the real ceilings: the PostgreSQL
// B-tree row limit (~2.7 KB) for anything indexed, the webhook's 8 MiB body, the bus's maximum
// message payload (1 MiB on a stock NATS server).
type LimitsConfig struct {
	// MaxAlertsPerRequest refuses a whole webhook request holding more alerts with 413 (reason
	// too_many_alerts). Alertmanager drops a group for good on any 4xx, so set the receiver's
	// max_alerts to at most this: Alertmanager then truncates instead, and says so in the payload.
	MaxAlertsPerRequest int `yaml:"max_alerts_per_request"` // default 5000
	// MaxLabelsPerAlert, MaxLabelNameBytes, MaxLabelValueBytes and MaxAnnotationsBytes (all the
	// annotations of one alert, names and values) reject one alert by itself; the rest of its
	// group is accepted.
	MaxLabelsPerAlert   int   `yaml:"max_labels_per_alert"`  // default 64
	MaxLabelNameBytes   Bytes `yaml:"max_label_name_bytes"`  // default 256B
	MaxLabelValueBytes  Bytes `yaml:"max_label_value_bytes"` // default 2KiB
	MaxAnnotationsBytes Bytes `yaml:"max_annotations_bytes"` // default 64KiB
	// MaxParamsBytes bounds the rendered params of one action (JSON): a larger one fails at
	// planning with reason bad_param instead of landing in the store.
	MaxParamsBytes Bytes `yaml:"max_params_bytes"` // default 64KiB
}

// maxLimitBytes is the largest byte bound accepted: nothing larger fits in a webhook body anyway,
// and a bound this size is a typo (a missing unit the other way round).
const maxLimitBytes = 1 << 30

// validateLimits checks limits: every bound is 0 (none) or positive, the byte bounds at most 1GiB.
func (c *Config) validateLimits(ch *checker) {
	l := c.Limits
	for _, n := range []struct {
		key string
		v   int
	}{
		{"limits.max_alerts_per_request", l.MaxAlertsPerRequest},
		{"limits.max_labels_per_alert", l.MaxLabelsPerAlert},
	} {
		if n.v < 0 {
			ch.errorf(n.key, "must not be negative (0 means no bound), got %d", n.v)
		}
	}
	for _, b := range []struct {
		key string
		v   Bytes
	}{
		{"limits.max_label_name_bytes", l.MaxLabelNameBytes},
		{"limits.max_label_value_bytes", l.MaxLabelValueBytes},
		{"limits.max_annotations_bytes", l.MaxAnnotationsBytes},
		{"limits.max_params_bytes", l.MaxParamsBytes},
	} {
		switch {
		case b.v < 0:
			ch.errorf(b.key, "must not be negative (0 means no bound), got %d", int64(b.v))
		case b.v > maxLimitBytes:
			ch.errorf(b.key, "%s is more than %s", b.v, Bytes(maxLimitBytes))
		}
	}
}

// checkProbeLabelSize refuses at load a probe label that limits: would reject at run time, when
// the probe fails and its alert is dropped.
func (c *Config) checkProbeLabelSize(ch *checker, key, name, value string) {
	l := c.Limits
	if l.MaxLabelNameBytes > 0 && Bytes(len(name)) > l.MaxLabelNameBytes {
		ch.errorf(key+".labels", "label name %q is %d bytes, more than limits.max_label_name_bytes %s", name, len(name), l.MaxLabelNameBytes)
	}
	if l.MaxLabelValueBytes > 0 && Bytes(len(value)) > l.MaxLabelValueBytes {
		ch.errorf(key+".labels."+name, "value is %d bytes, more than limits.max_label_value_bytes %s", len(value), l.MaxLabelValueBytes)
	}
}

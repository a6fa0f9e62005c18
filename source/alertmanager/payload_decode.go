package alertmanager

import (
	"bytes"
	"hash/maphash"
	"strconv"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
	"github.com/responder-sre/responder/internal/jsonscan"
)

// parseMessage decodes a notification into m, which is zero, without reflection, and reports
// true; it decodes exactly as json.Unmarshal into a zero webhook.Message does (FuzzPayloadDecode).
// It handles a strict subset of JSON: on anything else (invalid JSON, a repeated key, a key that
// matches a field only case-insensitively, a lone surrogate or invalid UTF-8 in a string, a null
// label value, a number where a string is expected, deep nesting in an unknown field...) it
// reports false and m holds garbage: the caller then hands the body to encoding/json, which
// decodes it (or refuses it) as it always did.
func parseMessage(body []byte, m *webhook.Message) bool {
	d := amDecoder{Scanner: jsonscan.Scanner{Data: body}}
	return d.message(m) && d.End()
}

// amDecoder reads a webhook payload; each method reports false on what it does not handle.
type amDecoder struct {
	jsonscan.Scanner
	// strs caches the strings decoded so far, by a hash of their bytes: the alerts of a group
	// repeat most label names and values, and every string they share is allocated once.
	strs [64]string
}

// internSeed seeds the hash of amDecoder.strs; maxIntern bounds the strings it caches.
var internSeed = maphash.MakeSeed()

const maxIntern = 512

// Bits of the keys of a notification (webhook.Message and the template.Data it embeds), to refuse
// a repeated key: encoding/json would overwrite a value or merge two objects.
const (
	mVersion = 1 << iota
	mGroupKey
	mTruncatedAlerts
	mReceiver
	mStatus
	mAlerts
	mNotificationReason
	mGroupLabels
	mCommonLabels
	mCommonAnnotations
	mRouteLabels
	mExternalURL
)

// Bits of the keys of an alert (template.Alert).
const (
	aStatus = 1 << iota
	aLabels
	aAnnotations
	aStartsAt
	aEndsAt
	aGeneratorURL
	aFingerprint
)

// messageKeys and alertKeys are the JSON names of the fields: encoding/json matches a key to them
// case-insensitively (bytes.EqualFold) when no name is equal.
var (
	messageKeys = []string{"version", "groupKey", "truncatedAlerts", "receiver", "status", "alerts", "notification_reason",
		"groupLabels", "commonLabels", "commonAnnotations", "routeLabels", "externalURL"}
	alertKeys = []string{"status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"}
)

func (d *amDecoder) message(m *webhook.Message) bool {
	if !d.Consume('{') {
		return false
	}
	if d.Consume('}') {
		return true
	}
	var seen uint
	for {
		d.WS()
		key, ok := d.StrBytes()
		if !ok || !d.Consume(':') {
			return false
		}
		bit, ok := d.messageField(m, key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.Consume(',') {
			continue
		}
		return d.Consume('}')
	}
}

// messageField decodes the value of key into m and returns the key's bit (0 for an unknown key,
// whose value is skipped).
func (d *amDecoder) messageField(m *webhook.Message, key []byte) (uint, bool) {
	var ok bool
	switch string(key) {
	case "version":
		m.Version, ok = d.str()
		return mVersion, ok
	case "groupKey":
		m.GroupKey, ok = d.str()
		return mGroupKey, ok
	case "truncatedAlerts":
		m.TruncatedAlerts, ok = d.uint()
		return mTruncatedAlerts, ok
	}
	bit := dataBit(key)
	if bit == 0 {
		return 0, d.unknown(key, messageKeys)
	}
	// encoding/json allocates the embedded *template.Data on its first key, whatever the value.
	if m.Data == nil {
		m.Data = new(template.Data)
	}
	return bit, d.dataField(m.Data, bit)
}

// dataBit is the bit of a key of template.Data, or 0.
func dataBit(key []byte) uint {
	switch string(key) {
	case "receiver":
		return mReceiver
	case "status":
		return mStatus
	case "alerts":
		return mAlerts
	case "notification_reason":
		return mNotificationReason
	case "groupLabels":
		return mGroupLabels
	case "commonLabels":
		return mCommonLabels
	case "commonAnnotations":
		return mCommonAnnotations
	case "routeLabels":
		return mRouteLabels
	case "externalURL":
		return mExternalURL
	}
	return 0
}

// dataField decodes the value of the key of bit into t.
func (d *amDecoder) dataField(t *template.Data, bit uint) bool {
	var ok bool
	switch bit {
	case mReceiver:
		t.Receiver, ok = d.str()
	case mStatus:
		t.Status, ok = d.str()
	case mAlerts:
		t.Alerts, ok = d.alerts()
	case mNotificationReason:
		t.NotificationReason, ok = d.str()
	case mGroupLabels:
		t.GroupLabels, ok = d.kv()
	case mCommonLabels:
		t.CommonLabels, ok = d.kv()
	case mCommonAnnotations:
		t.CommonAnnotations, ok = d.kv()
	case mRouteLabels:
		t.RouteLabels, ok = d.kv()
	case mExternalURL:
		t.ExternalURL, ok = d.str()
	}
	return ok
}

// unknown skips the value of a key that is no field's name. A key equal to a name but for case is
// refused: encoding/json would decode it into that field.
func (d *amDecoder) unknown(key []byte, names []string) bool {
	for _, n := range names {
		if bytes.EqualFold(key, []byte(n)) {
			return false
		}
	}
	return d.Skip(0)
}

// alerts decodes a list of alerts, or null.
func (d *amDecoder) alerts() (template.Alerts, bool) {
	if d.Null() {
		return nil, true
	}
	if !d.Consume('[') {
		return nil, false
	}
	as := make(template.Alerts, 0, 4)
	if d.Consume(']') {
		return as, true
	}
	for {
		as = append(as, template.Alert{})
		// null leaves the element zero, as encoding/json does.
		if !d.Null() && !d.alert(&as[len(as)-1]) {
			return nil, false
		}
		if d.Consume(',') {
			continue
		}
		return as, d.Consume(']')
	}
}

// alert decodes an object into a, which is zero.
func (d *amDecoder) alert(a *template.Alert) bool {
	if !d.Consume('{') {
		return false
	}
	if d.Consume('}') {
		return true
	}
	var seen uint
	for {
		d.WS()
		key, ok := d.StrBytes()
		if !ok || !d.Consume(':') {
			return false
		}
		bit, ok := d.alertField(a, key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.Consume(',') {
			continue
		}
		return d.Consume('}')
	}
}

// alertField decodes the value of key into a and returns the key's bit (0 for an unknown key).
func (d *amDecoder) alertField(a *template.Alert, key []byte) (uint, bool) {
	var ok bool
	switch string(key) {
	case "status":
		a.Status, ok = d.str()
		return aStatus, ok
	case "labels":
		a.Labels, ok = d.kv()
		return aLabels, ok
	case "annotations":
		a.Annotations, ok = d.kv()
		return aAnnotations, ok
	case "startsAt":
		return aStartsAt, d.Time(&a.StartsAt)
	case "endsAt":
		return aEndsAt, d.Time(&a.EndsAt)
	case "generatorURL":
		a.GeneratorURL, ok = d.str()
		return aGeneratorURL, ok
	case "fingerprint":
		a.Fingerprint, ok = d.str()
		return aFingerprint, ok
	}
	return 0, d.unknown(key, alertKeys)
}

// kv decodes an object of strings, or null. A repeated key keeps its last value, as with
// encoding/json; a null value is refused (encoding/json stores "").
func (d *amDecoder) kv() (template.KV, bool) {
	if d.Null() {
		return nil, true
	}
	if !d.Consume('{') {
		return nil, false
	}
	if d.Consume('}') {
		return template.KV{}, true
	}
	m := make(template.KV, 8)
	for {
		d.WS()
		k, ok := d.StrBytes()
		if !ok || !d.Consume(':') {
			return nil, false
		}
		key := d.intern(k)
		d.WS()
		v, ok := d.StrBytes()
		if !ok {
			return nil, false
		}
		m[key] = d.intern(v)
		if d.Consume(',') {
			continue
		}
		return m, d.Consume('}')
	}
}

// str decodes a string, or null (which leaves a string field as it is: empty).
func (d *amDecoder) str() (string, bool) {
	if d.Null() {
		return "", true
	}
	b, ok := d.StrBytes()
	if !ok {
		return "", false
	}
	return d.intern(b), true
}

// intern returns b as a string, the one of an earlier equal b if strs still holds it.
func (d *amDecoder) intern(b []byte) string {
	if len(b) == 0 || len(b) > maxIntern {
		return string(b)
	}
	i := maphash.Bytes(internSeed, b) % uint64(len(d.strs))
	if s := d.strs[i]; s == string(b) {
		return s
	}
	if s := d.strs[i^1]; s == string(b) { // two ways: fewer collisions
		return s
	}
	if d.strs[i] != "" {
		i ^= 1
	}
	s := string(b)
	d.strs[i] = s
	return s
}

// uint decodes an unsigned integer as encoding/json decodes a uint64, or null (0).
func (d *amDecoder) uint() (uint64, bool) {
	if d.Null() {
		return 0, true
	}
	lit, ok := d.Number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(lit), 10, 64)
	return n, err == nil
}

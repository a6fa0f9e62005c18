package alertmanager

import (
	"bytes"
	"hash/maphash"
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"
)

// parseMessage decodes a notification into m, which is zero, without reflection, and reports
// true; it decodes exactly as json.Unmarshal into a zero webhook.Message does (FuzzPayloadDecode).
// It handles a strict subset of JSON: on anything else (invalid JSON, a repeated key, a key that
// matches a field only case-insensitively, a lone surrogate or invalid UTF-8 in a string, a null
// label value, a number where a string is expected, deep nesting in an unknown field...) it
// reports false and m holds garbage: the caller then hands the body to encoding/json, which
// decodes it (or refuses it) as it always did.
func parseMessage(body []byte, m *webhook.Message) bool {
	d := amDecoder{data: body}
	return d.message(m) && d.end()
}

// amDecoder reads a webhook payload; each method reports false on what it does not handle.
type amDecoder struct {
	data    []byte
	off     int
	scratch []byte
	// strs caches the strings decoded so far, by a hash of their bytes: the alerts of a group
	// repeat most label names and values, and every string they share is allocated once.
	strs [64]string
}

// internSeed seeds the hash of amDecoder.strs; maxIntern bounds the strings it caches.
var internSeed = maphash.MakeSeed()

const maxIntern = 512

// maxSkipDepth bounds the nesting of an unknown field's value (encoding/json allows 10000).
const maxSkipDepth = 32

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
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	var seen uint
	for {
		d.ws()
		key, ok := d.strBytes()
		if !ok || !d.consume(':') {
			return false
		}
		bit, ok := d.messageField(m, key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.consume(',') {
			continue
		}
		return d.consume('}')
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
	return d.skip(0)
}

// alerts decodes a list of alerts, or null.
func (d *amDecoder) alerts() (template.Alerts, bool) {
	if d.null() {
		return nil, true
	}
	if !d.consume('[') {
		return nil, false
	}
	as := make(template.Alerts, 0, 4)
	if d.consume(']') {
		return as, true
	}
	for {
		as = append(as, template.Alert{})
		// null leaves the element zero, as encoding/json does.
		if !d.null() && !d.alert(&as[len(as)-1]) {
			return nil, false
		}
		if d.consume(',') {
			continue
		}
		return as, d.consume(']')
	}
}

// alert decodes an object into a, which is zero.
func (d *amDecoder) alert(a *template.Alert) bool {
	if !d.consume('{') {
		return false
	}
	if d.consume('}') {
		return true
	}
	var seen uint
	for {
		d.ws()
		key, ok := d.strBytes()
		if !ok || !d.consume(':') {
			return false
		}
		bit, ok := d.alertField(a, key)
		if !ok || seen&bit != 0 {
			return false
		}
		seen |= bit
		if d.consume(',') {
			continue
		}
		return d.consume('}')
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
		return aStartsAt, d.time(&a.StartsAt)
	case "endsAt":
		return aEndsAt, d.time(&a.EndsAt)
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
	if d.null() {
		return nil, true
	}
	if !d.consume('{') {
		return nil, false
	}
	if d.consume('}') {
		return template.KV{}, true
	}
	m := make(template.KV, 8)
	for {
		d.ws()
		k, ok := d.strBytes()
		if !ok || !d.consume(':') {
			return nil, false
		}
		key := d.intern(k)
		d.ws()
		v, ok := d.strBytes()
		if !ok {
			return nil, false
		}
		m[key] = d.intern(v)
		if d.consume(',') {
			continue
		}
		return m, d.consume('}')
	}
}

// str decodes a string, or null (which leaves a string field as it is: empty).
func (d *amDecoder) str() (string, bool) {
	if d.null() {
		return "", true
	}
	b, ok := d.strBytes()
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
	if d.null() {
		return 0, true
	}
	lit, ok := d.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(string(lit), 10, 64)
	return n, err == nil
}

// time decodes a time as time.Time.UnmarshalJSON does, from a string without escapes, or null
// (which leaves t as it is).
func (d *amDecoder) time(t *time.Time) bool {
	if d.null() {
		return true
	}
	if d.off >= len(d.data) || d.data[d.off] != '"' {
		return false
	}
	for i := d.off + 1; i < len(d.data); i++ {
		c := d.data[i]
		if c == '"' {
			lit := d.data[d.off : i+1]
			d.off = i + 1
			return t.UnmarshalJSON(lit) == nil
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return false
}

// skip skips a value, checking it is valid JSON (encoding/json checks the whole input before it
// decodes, so an unknown field's invalid value fails the body).
func (d *amDecoder) skip(depth int) bool {
	d.ws()
	if d.off >= len(d.data) {
		return false
	}
	switch d.data[d.off] {
	case '"':
		_, ok := d.strBytes()
		return ok
	case '{', '[':
		return depth < maxSkipDepth && d.skipComposite(depth)
	case 't':
		return d.literal("true")
	case 'f':
		return d.literal("false")
	case 'n':
		return d.null()
	}
	_, ok := d.number()
	return ok
}

// skipComposite skips an object or an array.
func (d *amDecoder) skipComposite(depth int) bool {
	obj := d.data[d.off] == '{'
	closing := byte(']')
	if obj {
		closing = '}'
	}
	d.off++
	if d.consume(closing) {
		return true
	}
	for {
		if obj {
			d.ws()
			if _, ok := d.strBytes(); !ok || !d.consume(':') {
				return false
			}
		}
		if !d.skip(depth + 1) {
			return false
		}
		if d.consume(',') {
			continue
		}
		return d.consume(closing)
	}
}

func (d *amDecoder) ws() {
	for d.off < len(d.data) {
		switch d.data[d.off] {
		case ' ', '\t', '\n', '\r':
			d.off++
		default:
			return
		}
	}
}

// end reports whether only spacing is left.
func (d *amDecoder) end() bool {
	d.ws()
	return d.off == len(d.data)
}

// consume skips spacing and c, reporting whether c was next.
func (d *amDecoder) consume(c byte) bool {
	d.ws()
	if d.off < len(d.data) && d.data[d.off] == c {
		d.off++
		return true
	}
	return false
}

// null skips spacing and a null literal, reporting whether one was next.
func (d *amDecoder) null() bool {
	d.ws()
	return d.literal("null")
}

// literal skips lit if it is next.
func (d *amDecoder) literal(lit string) bool {
	if len(d.data)-d.off >= len(lit) && string(d.data[d.off:d.off+len(lit)]) == lit {
		d.off += len(lit)
		return true
	}
	return false
}

// number returns a JSON number literal at the offset.
func (d *amDecoder) number() ([]byte, bool) {
	data, start := d.data, d.off
	i := start
	digits := func() bool {
		n := i
		for i < len(data) && '0' <= data[i] && data[i] <= '9' {
			i++
		}
		return i > n
	}
	if i < len(data) && data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case !digits():
		return nil, false
	}
	if i < len(data) && data[i] == '.' {
		i++
		if !digits() {
			return nil, false
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if !digits() {
			return nil, false
		}
	}
	d.off = i
	return data[start:i], true
}

// strBytes decodes a JSON string at the offset; the bytes are valid until the next call. Invalid
// UTF-8 is refused (encoding/json turns it into U+FFFD).
func (d *amDecoder) strBytes() ([]byte, bool) {
	if d.off >= len(d.data) || d.data[d.off] != '"' {
		return nil, false
	}
	start := d.off + 1
	for i := start; i < len(d.data); {
		c := d.data[i]
		switch {
		case c == '"':
			d.off = i + 1
			return d.data[start:i], true
		case c == '\\':
			return d.escaped(start, i)
		case c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			i += size
		}
	}
	return nil, false
}

// escaped decodes the rest of a string from i, its first backslash.
func (d *amDecoder) escaped(start, i int) ([]byte, bool) {
	b := append(d.scratch[:0], d.data[start:i]...)
	defer func() { d.scratch = b }()
	for i < len(d.data) {
		c := d.data[i]
		switch {
		case c == '"':
			d.off = i + 1
			return b, true
		case c == '\\':
			var ok bool
			if b, i, ok = d.escape(b, i); !ok {
				return nil, false
			}
		case c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRune(d.data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			b = append(b, d.data[i:i+size]...)
			i += size
		}
	}
	return nil, false
}

// escape appends the character of the escape sequence at i and returns the offset after it. A
// lone surrogate (encoding/json makes it U+FFFD) is refused.
func (d *amDecoder) escape(b []byte, i int) ([]byte, int, bool) {
	if i+1 >= len(d.data) {
		return nil, 0, false
	}
	switch c := d.data[i+1]; c {
	case '"', '\\', '/':
		return append(b, c), i + 2, true
	case 'b':
		return append(b, '\b'), i + 2, true
	case 'f':
		return append(b, '\f'), i + 2, true
	case 'n':
		return append(b, '\n'), i + 2, true
	case 'r':
		return append(b, '\r'), i + 2, true
	case 't':
		return append(b, '\t'), i + 2, true
	case 'u':
		r := d.hex4(i + 2)
		switch {
		case r < 0:
			return nil, 0, false
		case !utf16.IsSurrogate(r):
			return utf8.AppendRune(b, r), i + 6, true
		}
		if i+7 >= len(d.data) || d.data[i+6] != '\\' || d.data[i+7] != 'u' {
			return nil, 0, false
		}
		r = utf16.DecodeRune(r, d.hex4(i+8))
		if r == utf8.RuneError {
			return nil, 0, false
		}
		return utf8.AppendRune(b, r), i + 12, true
	}
	return nil, 0, false
}

// hex4 is the value of the four hex digits at i, or -1.
func (d *amDecoder) hex4(i int) rune {
	if i+4 > len(d.data) {
		return -1
	}
	var r rune
	for _, c := range d.data[i : i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r<<4 | rune(c)
	}
	return r
}

package alert

import (
	"strconv"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// decoder reads the JSON that AppendJSON writes, with any spacing. Each method reports false on
// anything else, invalid JSON included: the caller then hands the whole input to encoding/json,
// which decodes it (or refuses it) as it always did. Where it accepts, it decodes exactly as
// encoding/json does (FuzzJSON): so it accepts only what it is sure of.
type decoder struct {
	data    []byte
	off     int
	scratch []byte
}

// Bits of the fields an alert object holds, to refuse a repeated key (encoding/json would merge).
const (
	fName = 1 << iota
	fSource
	fStatus
	fLabels
	fAnnotations
	fValue
	fStartsAt
	fEndsAt
	fGeneratorURL
	fFingerprint
	fReceivedAt
	fFence
)

func (d *decoder) ws() {
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
func (d *decoder) end() bool {
	d.ws()
	return d.off == len(d.data)
}

// consume skips spacing and c, reporting whether c was next.
func (d *decoder) consume(c byte) bool {
	d.ws()
	if d.off < len(d.data) && d.data[d.off] == c {
		d.off++
		return true
	}
	return false
}

// null skips spacing and a null literal, reporting whether one was next.
func (d *decoder) null() bool {
	d.ws()
	if len(d.data)-d.off >= 4 && string(d.data[d.off:d.off+4]) == "null" {
		d.off += 4
		return true
	}
	return false
}

func (d *decoder) list() ([]Alert, bool) {
	if d.null() {
		return nil, true
	}
	if !d.consume('[') {
		return nil, false
	}
	as := make([]Alert, 0, 8)
	if d.consume(']') {
		return as, true
	}
	for {
		as = append(as, Alert{})
		if !d.alert(&as[len(as)-1]) {
			return nil, false
		}
		if d.consume(',') {
			continue
		}
		return as, d.consume(']')
	}
}

// alert decodes an object into a, which is zero.
func (d *decoder) alert(a *Alert) bool {
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
		bit, ok := d.field(a, string(key))
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

// field decodes the value of key into a and returns the key's bit.
func (d *decoder) field(a *Alert, key string) (uint, bool) {
	var ok bool
	switch key {
	case "name":
		a.Name, ok = d.str()
		return fName, ok
	case "source":
		a.Source, ok = d.str()
		return fSource, ok
	case "status":
		var s string
		s, ok = d.str()
		a.Status = Status(s)
		return fStatus, ok
	case "labels":
		a.Labels, ok = d.labels()
		return fLabels, ok
	case "annotations":
		a.Annotations, ok = d.labels()
		return fAnnotations, ok
	case "value":
		a.Value, ok = d.float()
		return fValue, ok
	case "startsAt":
		return fStartsAt, d.time(&a.StartsAt)
	case "endsAt":
		return fEndsAt, d.time(&a.EndsAt)
	case "generatorURL":
		a.GeneratorURL, ok = d.str()
		return fGeneratorURL, ok
	case "fingerprint":
		a.Fingerprint, ok = d.str()
		return fFingerprint, ok
	case "receivedAt":
		return fReceivedAt, d.time(&a.ReceivedAt)
	case "fence":
		a.Fence, ok = d.int()
		return fFence, ok
	}
	return 0, false
}

// str decodes a string, or null (which leaves a string field as it is: empty).
func (d *decoder) str() (string, bool) {
	if d.null() {
		return "", true
	}
	b, ok := d.strBytes()
	switch {
	case !ok:
		return "", false
	case string(b) == string(StatusFiring): // the values of most alerts: no allocation
		return string(StatusFiring), true
	case string(b) == SourceAlertmanager:
		return SourceAlertmanager, true
	}
	return string(b), true
}

// strBytes decodes a JSON string at the offset; the bytes are valid until the next call.
func (d *decoder) strBytes() ([]byte, bool) {
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
			if r == utf8.RuneError && size == 1 { // encoding/json turns it into U+FFFD
				return nil, false
			}
			i += size
		}
	}
	return nil, false
}

// escaped decodes the rest of a string from i, its first backslash.
func (d *decoder) escaped(start, i int) ([]byte, bool) {
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
func (d *decoder) escape(b []byte, i int) ([]byte, int, bool) {
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
func (d *decoder) hex4(i int) rune {
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

// labels decodes an object of strings, or null.
func (d *decoder) labels() (map[string]string, bool) {
	if d.null() {
		return nil, true
	}
	if !d.consume('{') {
		return nil, false
	}
	m := make(map[string]string, 8)
	if d.consume('}') {
		return m, true
	}
	for {
		d.ws()
		k, ok := d.strBytes()
		if !ok || !d.consume(':') {
			return nil, false
		}
		key := string(k)
		d.ws()
		v, ok := d.strBytes()
		if !ok {
			return nil, false
		}
		m[key] = string(v)
		if d.consume(',') {
			continue
		}
		return m, d.consume('}')
	}
}

// number returns a JSON number literal at the offset.
func (d *decoder) number() ([]byte, bool) {
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

// float decodes a number into a new float64, or null into nil.
func (d *decoder) float() (*float64, bool) {
	if d.null() {
		return nil, true
	}
	lit, ok := d.number()
	if !ok {
		return nil, false
	}
	f, err := strconv.ParseFloat(string(lit), 64)
	if err != nil {
		return nil, false
	}
	return &f, true
}

// int decodes an integer, or null (0).
func (d *decoder) int() (int64, bool) {
	if d.null() {
		return 0, true
	}
	lit, ok := d.number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return n, err == nil
}

// time decodes a time as time.Time.UnmarshalJSON does, from a string without escapes, or null
// (which leaves t as it is).
func (d *decoder) time(t *time.Time) bool {
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

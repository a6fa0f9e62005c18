package alert

import (
	"strconv"

	"github.com/responder-sre/responder/internal/jsonscan"
)

// decoder reads the JSON that AppendJSON writes, with any spacing. Each method reports false on
// anything else, invalid JSON included: the caller then hands the whole input to encoding/json,
// which decodes it (or refuses it) as it always did. Where it accepts, it decodes exactly as
// encoding/json does (FuzzJSON): so it accepts only what it is sure of.
type decoder struct{ jsonscan.Scanner }

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

func (d *decoder) list() ([]Alert, bool) {
	if d.Null() {
		return nil, true
	}
	if !d.Consume('[') {
		return nil, false
	}
	as := make([]Alert, 0, 8)
	if d.Consume(']') {
		return as, true
	}
	for {
		as = append(as, Alert{})
		if !d.alert(&as[len(as)-1]) {
			return nil, false
		}
		if d.Consume(',') {
			continue
		}
		return as, d.Consume(']')
	}
}

// alert decodes an object into a, which is zero.
func (d *decoder) alert(a *Alert) bool {
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
		bit, ok := d.field(a, string(key))
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
		return fStartsAt, d.Time(&a.StartsAt)
	case "endsAt":
		return fEndsAt, d.Time(&a.EndsAt)
	case "generatorURL":
		a.GeneratorURL, ok = d.str()
		return fGeneratorURL, ok
	case "fingerprint":
		a.Fingerprint, ok = d.str()
		return fFingerprint, ok
	case "receivedAt":
		return fReceivedAt, d.Time(&a.ReceivedAt)
	case "fence":
		a.Fence, ok = d.int()
		return fFence, ok
	}
	return 0, false
}

// str decodes a string, or null (which leaves a string field as it is: empty).
func (d *decoder) str() (string, bool) {
	if d.Null() {
		return "", true
	}
	b, ok := d.StrBytes()
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

// labels decodes an object of strings, or null.
func (d *decoder) labels() (map[string]string, bool) {
	if d.Null() {
		return nil, true
	}
	if !d.Consume('{') {
		return nil, false
	}
	m := make(map[string]string, 8)
	if d.Consume('}') {
		return m, true
	}
	for {
		d.WS()
		k, ok := d.StrBytes()
		if !ok || !d.Consume(':') {
			return nil, false
		}
		key := string(k)
		d.WS()
		v, ok := d.StrBytes()
		if !ok {
			return nil, false
		}
		m[key] = string(v)
		if d.Consume(',') {
			continue
		}
		return m, d.Consume('}')
	}
}

// float decodes a number into a new float64, or null into nil.
func (d *decoder) float() (*float64, bool) {
	if d.Null() {
		return nil, true
	}
	lit, ok := d.Number()
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
	if d.Null() {
		return 0, true
	}
	lit, ok := d.Number()
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(string(lit), 10, 64)
	return n, err == nil
}

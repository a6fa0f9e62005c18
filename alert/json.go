package alert

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/responder-sre/responder/internal/jsonscan"
)

// An Alert is encoded on every hop (webhook → bus → incident row) and decoded on most. The
// functions here do what encoding/json does with Alert's struct tags, byte for byte, without
// reflection: AppendJSON writes exactly what json.Marshal writes; ParseJSON and ParseListJSON read
// the shape AppendJSON writes directly and hand anything else (other spacing is fine; unknown or
// repeated keys, escapes they do not handle) to encoding/json unchanged, so every input decodes
// as json.Unmarshal decodes it. FuzzJSONDecode and FuzzJSONEncode check both. Alert has no
// MarshalJSON or UnmarshalJSON method on purpose: encoding/json validates and compacts what
// such a method returns, and re-scans what it hands one, which costs about what it saves.

// AppendJSON appends the alert's JSON, json.Marshal's byte for byte, to b.
func (a Alert) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"name":`...)
	b = appendString(b, a.Name)
	b = append(b, `,"source":`...)
	b = appendString(b, a.Source)
	b = append(b, `,"status":`...)
	b = appendString(b, string(a.Status))
	b = append(b, `,"labels":`...)
	b = AppendLabelsJSON(b, a.Labels)
	if len(a.Annotations) > 0 {
		b = append(b, `,"annotations":`...)
		b = AppendLabelsJSON(b, a.Annotations)
	}
	if a.Value != nil {
		var err error
		b = append(b, `,"value":`...)
		if b, err = appendFloat(b, *a.Value); err != nil {
			return nil, err
		}
	}
	var err error
	b = append(b, `,"startsAt":`...)
	if b, err = appendTime(b, a.StartsAt); err != nil {
		return nil, err
	}
	if !a.EndsAt.IsZero() {
		b = append(b, `,"endsAt":`...)
		if b, err = appendTime(b, a.EndsAt); err != nil {
			return nil, err
		}
	}
	if a.GeneratorURL != "" {
		b = append(b, `,"generatorURL":`...)
		b = appendString(b, a.GeneratorURL)
	}
	b = append(b, `,"fingerprint":`...)
	b = appendString(b, a.Fingerprint)
	b = append(b, `,"receivedAt":`...)
	if b, err = appendTime(b, a.ReceivedAt); err != nil {
		return nil, err
	}
	if a.Fence != 0 {
		b = append(b, `,"fence":`...)
		b = strconv.AppendInt(b, a.Fence, 10)
	}
	return append(b, '}'), nil
}

// AppendListJSON appends the JSON array of alerts to b, as encoding/json encodes a slice of them
// (null for a nil slice).
func AppendListJSON(b []byte, as []Alert) ([]byte, error) {
	if as == nil {
		return append(b, "null"...), nil
	}
	b = append(b, '[')
	for i := range as {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = as[i].AppendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// AppendLabelsJSON appends a label set (or annotations) as encoding/json encodes a
// map[string]string: keys sorted, null for a nil map.
func AppendLabelsJSON(b []byte, m map[string]string) []byte {
	b, _ = appendObject(b, m, func(b []byte, v string) ([]byte, bool) { return appendString(b, v), true })
	return b
}

// appendObject appends m as encoding/json encodes a map with string keys: keys sorted, each value
// by val, null for a nil map. It stops at the first value val cannot encode (false).
func appendObject[V any](b []byte, m map[string]V, val func([]byte, V) ([]byte, bool)) ([]byte, bool) {
	if m == nil {
		return append(b, "null"...), true
	}
	var buf [16]string
	keys := buf[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, k)
		b = append(b, ':')
		var ok bool
		if b, ok = val(b, m[k]); !ok {
			return b, false
		}
	}
	return append(b, '}'), true
}

func appendTime(b []byte, t time.Time) ([]byte, error) {
	b = append(b, '"')
	b, err := t.AppendText(b)
	if err != nil {
		return nil, fmt.Errorf("alert: %w", err)
	}
	return append(b, '"'), nil
}

// appendFloat is encoding/json's float64 encoding (ES6 number formatting).
func appendFloat(b []byte, f float64) ([]byte, error) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, &json.UnsupportedValueError{Str: strconv.FormatFloat(f, 'g', -1, 64)}
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' { // e-09 → e-9
		n := len(b)
		if n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, nil
}

const hexDigits = "0123456789abcdef"

// appendString is encoding/json's string encoding with HTML escaping (its default): <, > and &
// as \u003c, \u003e, \u0026, invalid UTF-8 as \ufffd, U+2028 and U+2029 escaped.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// ParseJSON decodes an alert as json.Unmarshal into a zero Alert does.
func ParseJSON(data []byte) (Alert, error) {
	d := decoder{jsonscan.Scanner{Data: data}}
	var a Alert
	if d.alert(&a) && d.End() {
		return a, nil
	}
	a = Alert{}
	err := json.Unmarshal(data, &a)
	return a, err
}

// ParseListJSON decodes a JSON array of alerts as json.Unmarshal into a nil []Alert does.
func ParseListJSON(data []byte) ([]Alert, error) {
	d := decoder{jsonscan.Scanner{Data: data}}
	if as, ok := d.list(); ok && d.End() {
		return as, nil
	}
	var as []Alert
	if err := json.Unmarshal(data, &as); err != nil {
		return nil, err
	}
	return as, nil
}

// AppendJSONValue appends v as encoding/json encodes it, for the values audit details and action
// params hold: nil, strings (of any string type without JSON or text methods), booleans,
// integers, float64, and maps of string keys and slices of them. It reports false (b may then
// hold part of v: discard it) for anything else; the caller then uses encoding/json.
func AppendJSONValue(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case int:
		return strconv.AppendInt(b, int64(v), 10), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case int32:
		return strconv.AppendInt(b, int64(v), 10), true
	case uint64:
		return strconv.AppendUint(b, v, 10), true
	case float64:
		b, err := appendFloat(b, v)
		return b, err == nil
	case map[string]string:
		return AppendLabelsJSON(b, v), true
	case map[string]any:
		return appendObject(b, v, AppendJSONValue)
	case []any:
		return appendSlice(b, v)
	case []string:
		if v == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, s)
		}
		return append(b, ']'), true
	}
	return appendNamedString(b, v)
}

var (
	marshalerType     = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// appendNamedString encodes a value of a named string type (vocab.State, …) as encoding/json
// does, unless its type has JSON or text methods.
func appendNamedString(b []byte, v any) ([]byte, bool) {
	rv := reflect.ValueOf(v)
	t := rv.Type()
	if rv.Kind() != reflect.String || t.Implements(marshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(marshalerType) || reflect.PointerTo(t).Implements(textMarshalerType) {
		return b, false
	}
	return appendString(b, rv.String()), true
}

func appendSlice(b []byte, s []any) ([]byte, bool) {
	if s == nil {
		return append(b, "null"...), true
	}
	b = append(b, '[')
	for i, v := range s {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, ok = AppendJSONValue(b, v); !ok {
			return b, false
		}
	}
	return append(b, ']'), true
}

// Package jsonscan holds the primitives of responder's reflection-free JSON decoders (alert's and
// the Alertmanager webhook's): each reads a strict subset of JSON and reports false on anything
// else, so that its caller hands the whole input to encoding/json, which decodes it (or refuses it)
// as it always did. Where they accept, they decode exactly as encoding/json does (each decoder's
// fuzz test compares the two).
package jsonscan

import (
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// Scanner reads Data from Off. Decoders embed it and add their own types' methods.
type Scanner struct {
	Data    []byte
	Off     int
	scratch []byte
}

// MaxSkipDepth bounds the nesting of a value Skip skips (encoding/json allows 10000).
const MaxSkipDepth = 32

// WS skips spacing.
func (d *Scanner) WS() {
	for d.Off < len(d.Data) {
		switch d.Data[d.Off] {
		case ' ', '\t', '\n', '\r':
			d.Off++
		default:
			return
		}
	}
}

// End reports whether only spacing is left.
func (d *Scanner) End() bool {
	d.WS()
	return d.Off == len(d.Data)
}

// Consume skips spacing and c, reporting whether c was next.
func (d *Scanner) Consume(c byte) bool {
	d.WS()
	if d.Off < len(d.Data) && d.Data[d.Off] == c {
		d.Off++
		return true
	}
	return false
}

// Null skips spacing and a null literal, reporting whether one was next.
func (d *Scanner) Null() bool {
	d.WS()
	return d.Literal("null")
}

// Literal skips lit if it is next.
func (d *Scanner) Literal(lit string) bool {
	if len(d.Data)-d.Off >= len(lit) && string(d.Data[d.Off:d.Off+len(lit)]) == lit {
		d.Off += len(lit)
		return true
	}
	return false
}

// Number returns a JSON number literal at the offset.
func (d *Scanner) Number() ([]byte, bool) {
	data, start := d.Data, d.Off
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
	d.Off = i
	return data[start:i], true
}

// StrBytes decodes a JSON string at the offset; the bytes are valid until the next call. Invalid
// UTF-8 is refused (encoding/json turns it into U+FFFD).
func (d *Scanner) StrBytes() ([]byte, bool) {
	if d.Off >= len(d.Data) || d.Data[d.Off] != '"' {
		return nil, false
	}
	start := d.Off + 1
	for i := start; i < len(d.Data); {
		c := d.Data[i]
		switch {
		case c == '"':
			d.Off = i + 1
			return d.Data[start:i], true
		case c == '\\':
			return d.escaped(start, i)
		case c < 0x20:
			return nil, false
		case c < utf8.RuneSelf:
			i++
		default:
			r, size := utf8.DecodeRune(d.Data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			i += size
		}
	}
	return nil, false
}

// escaped decodes the rest of a string from i, its first backslash.
func (d *Scanner) escaped(start, i int) ([]byte, bool) {
	b := append(d.scratch[:0], d.Data[start:i]...)
	defer func() { d.scratch = b }()
	for i < len(d.Data) {
		c := d.Data[i]
		switch {
		case c == '"':
			d.Off = i + 1
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
			r, size := utf8.DecodeRune(d.Data[i:])
			if r == utf8.RuneError && size == 1 {
				return nil, false
			}
			b = append(b, d.Data[i:i+size]...)
			i += size
		}
	}
	return nil, false
}

// escape appends the character of the escape sequence at i and returns the offset after it. A
// lone surrogate (encoding/json makes it U+FFFD) is refused.
func (d *Scanner) escape(b []byte, i int) ([]byte, int, bool) {
	if i+1 >= len(d.Data) {
		return nil, 0, false
	}
	switch c := d.Data[i+1]; c {
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
		if i+7 >= len(d.Data) || d.Data[i+6] != '\\' || d.Data[i+7] != 'u' {
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
func (d *Scanner) hex4(i int) rune {
	if i+4 > len(d.Data) {
		return -1
	}
	var r rune
	for _, c := range d.Data[i : i+4] {
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

// Time decodes a time as time.Time.UnmarshalJSON does, from a string without escapes, or null
// (which leaves t as it is).
func (d *Scanner) Time(t *time.Time) bool {
	if d.Null() {
		return true
	}
	if d.Off >= len(d.Data) || d.Data[d.Off] != '"' {
		return false
	}
	for i := d.Off + 1; i < len(d.Data); i++ {
		c := d.Data[i]
		if c == '"' {
			lit := d.Data[d.Off : i+1]
			d.Off = i + 1
			return t.UnmarshalJSON(lit) == nil
		}
		if c < 0x20 || c == '\\' || c >= utf8.RuneSelf {
			return false
		}
	}
	return false
}

// Skip skips a value, checking it is valid JSON (encoding/json checks the whole input before it
// decodes, so an unknown field's invalid value fails the body).
func (d *Scanner) Skip(depth int) bool {
	d.WS()
	if d.Off >= len(d.Data) {
		return false
	}
	switch d.Data[d.Off] {
	case '"':
		_, ok := d.StrBytes()
		return ok
	case '{', '[':
		return depth < MaxSkipDepth && d.skipComposite(depth)
	case 't':
		return d.Literal("true")
	case 'f':
		return d.Literal("false")
	case 'n':
		return d.Null()
	}
	_, ok := d.Number()
	return ok
}

// skipComposite skips an object or an array.
func (d *Scanner) skipComposite(depth int) bool {
	obj := d.Data[d.Off] == '{'
	closing := byte(']')
	if obj {
		closing = '}'
	}
	d.Off++
	if d.Consume(closing) {
		return true
	}
	for {
		if obj {
			d.WS()
			if _, ok := d.StrBytes(); !ok || !d.Consume(':') {
				return false
			}
		}
		if !d.Skip(depth + 1) {
			return false
		}
		if d.Consume(',') {
			continue
		}
		return d.Consume(closing)
	}
}

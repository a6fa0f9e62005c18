package handlers

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Excerpt returns the first n bytes of b (a downstream's response, say) as one line of printable
// UTF-8: whitespace and control characters collapse to single spaces and anything unprintable
// becomes '?'. It is safe to put in a result, an error or a log line.
func Excerpt(b []byte, n int) string {
	b = b[:min(len(b), n)]
	var sb strings.Builder
	space := false
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		b = b[size:]
		switch {
		case unicode.IsSpace(r) || unicode.IsControl(r):
			space = true
			continue
		case r == utf8.RuneError || !unicode.IsPrint(r):
			r = '?'
		}
		if space && sb.Len() > 0 {
			sb.WriteByte(' ')
		}
		space = false
		sb.WriteRune(r)
	}
	return sb.String()
}

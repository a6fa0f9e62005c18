package jsonscan

import (
	"encoding/json"
	"strings"
	"testing"
)

// Each primitive accepts what encoding/json accepts the same way, and refuses (false) the rest of
// what it is given; the decoders' fuzz tests compare whole documents.
func TestStrBytes(t *testing.T) {
	for _, in := range []string{`"plain"`, `"esc \" \\ \/ \b \f \n \r \t"`, `"\u00e9\u4e2d"`, `"\ud83d\ude00"`, `"é中😀"`, `""`} {
		d := Scanner{Data: []byte(in)}
		got, ok := d.StrBytes()
		var want string
		if err := json.Unmarshal([]byte(in), &want); err != nil || !ok || string(got) != want || !d.End() {
			t.Errorf("StrBytes(%s) = %q, %v; encoding/json: %q, %v", in, got, ok, want, err)
		}
	}
	// Refused: invalid, or decoded by encoding/json with a replacement character.
	for _, in := range []string{`"unterminated`, "\"ctl \x01\"", `"\x"`, `"\u12"`, `"\ud83d"`, `"\ud83d\u0041"`, "\"\xff\"", `plain`} {
		d := Scanner{Data: []byte(in)}
		if got, ok := d.StrBytes(); ok {
			t.Errorf("StrBytes(%q) accepted: %q", in, got)
		}
	}
}

func TestNumber(t *testing.T) {
	for _, tc := range []struct {
		in, lit string
		ok      bool
	}{
		{"0", "0", true}, {"-12.5e+3", "-12.5e+3", true}, {"1E9,", "1E9", true},
		{"01", "0", true}, // the literal ends at the 0; the caller sees the 1 that follows
		{"-", "", false}, {"1.", "", false}, {"1e", "", false}, {".5", "", false}, {"+1", "", false},
	} {
		d := Scanner{Data: []byte(tc.in)}
		lit, ok := d.Number()
		if ok != tc.ok || string(lit) != tc.lit {
			t.Errorf("Number(%q) = %q, %v; want %q, %v", tc.in, lit, ok, tc.lit, tc.ok)
		}
	}
}

func TestSkip(t *testing.T) {
	for _, in := range []string{`{"a": [1, "x", true, false, null, {"b": {}}], "c": -1e3}`, `[]`, `"s"`, `  7  `} {
		d := Scanner{Data: []byte(in)}
		if !d.Skip(0) || !d.End() {
			t.Errorf("Skip(%s) refused", in)
		}
	}
	for _, in := range []string{`{"a" 1}`, `[1,]`, `{"a": tru}`, `[1 2]`, `{1: 2}`, ``} {
		d := Scanner{Data: []byte(in)}
		if d.Skip(0) && d.End() {
			t.Errorf("Skip(%q) accepted", in)
		}
	}
	deep := strings.Repeat("[", MaxSkipDepth+1) + strings.Repeat("]", MaxSkipDepth+1)
	if d := (Scanner{Data: []byte(deep)}); d.Skip(0) {
		t.Errorf("Skip accepted %d levels of nesting, more than MaxSkipDepth", MaxSkipDepth+1)
	}
	ok := strings.Repeat("[", MaxSkipDepth) + strings.Repeat("]", MaxSkipDepth)
	if d := (Scanner{Data: []byte(ok)}); !d.Skip(0) {
		t.Errorf("Skip refused %d levels of nesting", MaxSkipDepth)
	}
}

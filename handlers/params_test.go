package handlers

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/vocab"
)

func TestParamReader(t *testing.T) {
	p := Params{
		"s": "web", "empty": "", "tmpl": "{{ alert.labels.pod }}", "null": nil,
		"t": true, "f": false, "n": 3, "n64": int64(-7), "u64": uint64(9), "float": 4.0, "frac": 2.5, "big": 1e12,
		"d": "90s", "dprom": "1d", "dzero": "0s", "dneg": "-1m", "dbad": "soon",
	}
	const def = 5 * time.Minute
	tests := []struct {
		name     string
		static   bool
		nonEmpty bool
		read     func(r *ParamReader) any
		want     any
		err      string // "" = no error recorded
	}{
		{"string", false, false, func(r *ParamReader) any { return pair(r.String("s")) }, "web true", ""},
		{"string absent", false, false, func(r *ParamReader) any { return pair(r.String("nope")) }, " false", ""},
		{"string nil", false, false, func(r *ParamReader) any { return pair(r.String("null")) }, " false", ""},
		{"string not a string", false, false, func(r *ParamReader) any { return pair(r.String("n")) }, " false", `param "n" must be a string, not int`},
		{"string templated static", true, false, func(r *ParamReader) any { return pair(r.String("tmpl")) }, " false", ""},
		{"string templated rendered", false, false, func(r *ParamReader) any { return pair(r.String("tmpl")) }, "{{ alert.labels.pod }} true", ""},
		{"string empty allowed", false, false, func(r *ParamReader) any { return pair(r.String("empty")) }, " true", ""},
		{"string empty refused", false, true, func(r *ParamReader) any { return pair(r.String("empty")) }, " false", `param "empty" is empty`},
		{"string empty refused static", true, true, func(r *ParamReader) any { return pair(r.String("empty")) }, " false", `param "empty" is empty`},
		{"bool true", false, false, func(r *ParamReader) any { return r.Bool("t", false) }, true, ""},
		{"bool false", false, false, func(r *ParamReader) any { return r.Bool("f", true) }, false, ""},
		{"bool absent default", false, false, func(r *ParamReader) any { return r.Bool("nope", true) }, true, ""},
		{"bool templated static default", true, false, func(r *ParamReader) any { return r.Bool("tmpl", true) }, true, ""},
		{"bool not a bool", false, false, func(r *ParamReader) any { return r.Bool("s", true) }, true, `param "s" must be a boolean, not string`},
		{"int", false, false, func(r *ParamReader) any { return pair(r.Int("n")) }, "3 true", ""},
		{"int64", false, false, func(r *ParamReader) any { return pair(r.Int("n64")) }, "-7 true", ""},
		{"uint64", false, false, func(r *ParamReader) any { return pair(r.Int("u64")) }, "9 true", ""},
		{"whole float", false, false, func(r *ParamReader) any { return pair(r.Int("float")) }, "4 true", ""},
		{"fraction", false, false, func(r *ParamReader) any { return pair(r.Int("frac")) }, "0 false", `param "frac" must be an integer, not 2.5`},
		{"too big", false, false, func(r *ParamReader) any { return pair(r.Int("big")) }, "0 false", "must be an integer"},
		{"int string", false, false, func(r *ParamReader) any { return pair(r.Int("s")) }, "0 false", `param "s" must be an integer, not web`},
		{"int absent", false, false, func(r *ParamReader) any { return pair(r.Int("nope")) }, "0 false", ""},
		{"int templated static", true, false, func(r *ParamReader) any { return pair(r.Int("tmpl")) }, "0 false", ""},
		{"int templated rendered", false, false, func(r *ParamReader) any { return pair(r.Int("tmpl")) }, "0 false", "must be an integer"},
		{"duration go", false, false, func(r *ParamReader) any { return r.Duration("d", def) }, 90 * time.Second, ""},
		{"duration prometheus", false, false, func(r *ParamReader) any { return r.Duration("dprom", def) }, 24 * time.Hour, ""},
		{"duration absent", false, false, func(r *ParamReader) any { return r.Duration("nope", def) }, def, ""},
		{"duration templated static", true, false, func(r *ParamReader) any { return r.Duration("tmpl", def) }, def, ""},
		{"duration zero", false, false, func(r *ParamReader) any { return r.Duration("dzero", def) }, def, `param "dzero" must be positive, got 0s`},
		{"duration negative", false, false, func(r *ParamReader) any { return r.Duration("dneg", def) }, def, "must be positive"},
		{"duration bad", false, false, func(r *ParamReader) any { return r.Duration("dbad", def) }, def, `param "dbad": invalid duration "soon"`},
		{"duration empty", false, false, func(r *ParamReader) any { return r.Duration("empty", def) }, def, `invalid duration ""`},
		{"duration empty refused", false, true, func(r *ParamReader) any { return r.Duration("empty", def) }, def, `param "empty" is empty`},
		{"duration not a string", false, false, func(r *ParamReader) any { return r.Duration("n", def) }, def, "must be a string"},
		{"raw templated static", true, false, func(r *ParamReader) any { return triple(r.Raw("tmpl")) }, "true false", ""},
		{"raw templated rendered", false, false, func(r *ParamReader) any { return triple(r.Raw("tmpl")) }, "true true", ""},
		{"raw nil", false, false, func(r *ParamReader) any { return triple(r.Raw("null")) }, "false false", ""},
		{"raw number static", true, false, func(r *ParamReader) any { return triple(r.Raw("n")) }, "true true", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := NewParamReader(p, tc.static)
			r.NonEmpty = tc.nonEmpty
			if got := tc.read(r); got != tc.want {
				t.Errorf("read = %v, want %v", got, tc.want)
			}
			err := r.Err()
			switch {
			case tc.err == "" && (err != nil || r.Failed()):
				t.Errorf("error %v (failed %t), want none", err, r.Failed())
			case tc.err != "" && (err == nil || !r.Failed()):
				t.Errorf("no error (failed %t), want %q", r.Failed(), tc.err)
			case tc.err != "" && !strings.Contains(err.Error(), tc.err):
				t.Errorf("error %v, want %q", err, tc.err)
			case tc.err != "" && ReasonOf(err) != vocab.ReasonBadParam:
				t.Errorf("reason %s, want bad_param", ReasonOf(err))
			}
		})
	}
}

// pair and triple print what a read returned, to compare in a table.
func pair[T any](v T, ok bool) string { return fmt.Sprintf("%v %v", v, ok) }

func triple(_ any, present, known bool) string { return fmt.Sprintf("%v %v", present, known) }

func TestIntValue(t *testing.T) {
	tests := []struct {
		v    any
		want int
		ok   bool
	}{
		{0, 0, true},
		{-3, -3, true},
		{int64(42), 42, true},
		{uint64(math.MaxInt32), math.MaxInt32, true},
		{uint64(math.MaxInt32 + 1), 0, false},
		{6.0, 6, true},
		{-6.0, -6, true},
		{6.5, 0, false},
		{float64(math.MaxInt32) + 1, 0, false},
		{math.NaN(), 0, false},
		{math.Inf(1), 0, false},
		{"6", 0, false},
		{nil, 0, false},
		{true, 0, false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%T(%v)", tc.v, tc.v), func(t *testing.T) {
			if got, ok := IntValue(tc.v); got != tc.want || ok != tc.ok {
				t.Errorf("IntValue(%v) = %d, %t, want %d, %t", tc.v, got, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestParamReaderCollects(t *testing.T) {
	r := NewParamReader(Params{"a": 1, "b": "x"}, false)
	if r.Failed() || r.Err() != nil {
		t.Fatal("a fresh reader has failed")
	}
	own := errors.New("own check")
	r.String("a")
	r.Bool("b", false)
	r.Add(own)
	r.Failf("param %q: %w", "c", own)
	err := r.Err()
	var he *Error
	if !errors.As(err, &he) || he.Reason != vocab.ReasonBadParam {
		t.Fatalf("Err() = %#v, want *Error with reason bad_param", err)
	}
	if !errors.Is(err, own) {
		t.Errorf("Err() does not wrap the added error: %v", err)
	}
	want := "bad_param: param \"a\" must be a string, not int\nparam \"b\" must be a boolean, not string\nown check\nparam \"c\": own check"
	if err.Error() != want {
		t.Errorf("Err() = %q, want %q", err.Error(), want)
	}
}

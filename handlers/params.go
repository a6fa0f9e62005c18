package handlers

import (
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/responder-sre/responder/vocab"
)

// ParamReader reads typed params for a handler's Build and ValidateStatic, and collects what is
// wrong with them instead of stopping at the first problem. In static mode (rule load) a templated
// string is unknown: it reads as absent and is checked once rendered. Err returns everything
// collected as one bad_param *Error.
type ParamReader struct {
	// NonEmpty makes String and Duration refuse an empty string ("param %q is empty").
	NonEmpty bool

	p      Params
	static bool
	errs   []error
}

// NewParamReader returns a reader of p; static is true at rule load, when templates are unrendered.
func NewParamReader(p Params, static bool) *ParamReader {
	return &ParamReader{p: p, static: static}
}

// Raw returns the value of name: present is false when it is absent or nil, known is false when it
// is absent or (static mode) templated.
func (r *ParamReader) Raw(name string) (v any, present, known bool) {
	v, ok := r.p[name]
	if !ok || v == nil {
		return nil, false, false
	}
	if s, isStr := v.(string); isStr && r.static && IsTemplate(s) {
		return v, true, false
	}
	return v, true, true
}

// String returns the string param name; ok is false when it is unknown (see Raw) or not a string
// (an error), or empty when NonEmpty (an error).
func (r *ParamReader) String(name string) (s string, ok bool) {
	v, _, known := r.Raw(name)
	if !known {
		return "", false
	}
	s, ok = v.(string)
	switch {
	case !ok:
		r.Failf("param %q must be a string, not %T", name, v)
		return "", false
	case r.NonEmpty && s == "":
		r.Failf("param %q is empty", name)
		return "", false
	}
	return s, true
}

// Bool returns the boolean param name, def when it is unknown or not a boolean (an error).
func (r *ParamReader) Bool(name string, def bool) bool {
	v, _, known := r.Raw(name)
	if !known {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		r.Failf("param %q must be a boolean, not %T", name, v)
		return def
	}
	return b
}

// Int returns the integer param name; ok is false when it is unknown or not an integer (an error;
// see IntValue).
func (r *ParamReader) Int(name string) (n int, ok bool) {
	v, _, known := r.Raw(name)
	if !known {
		return 0, false
	}
	n, ok = IntValue(v)
	if !ok {
		r.Failf("param %q must be an integer, not %v", name, v)
	}
	return n, ok
}

// Duration returns the positive duration param name (Go or Prometheus syntax), def when it is
// unknown or invalid (an error).
func (r *ParamReader) Duration(name string, def time.Duration) time.Duration {
	s, ok := r.String(name)
	if !ok {
		return def
	}
	d, err := ParseDuration(s)
	if err != nil {
		r.Failf("param %q: %v", name, err)
		return def
	}
	if d <= 0 {
		r.Failf("param %q must be positive, got %s", name, s)
		return def
	}
	return d
}

// Failf records a problem with the params.
func (r *ParamReader) Failf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf(format, args...))
}

// Add records err, a problem with the params found by the handler's own checks.
func (r *ParamReader) Add(err error) {
	r.errs = append(r.errs, err)
}

// Failed reports whether a problem has been recorded.
func (r *ParamReader) Failed() bool { return len(r.errs) > 0 }

// Err returns the problems recorded, joined, as an *Error with vocab.ReasonBadParam; nil when none.
func (r *ParamReader) Err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return &Error{Reason: vocab.ReasonBadParam, Err: errors.Join(r.errs...)}
}

// IntValue returns v as an int when it is a whole number as decoded from YAML or JSON (int, int64,
// uint64 or float64) that fits; ok is false otherwise.
func IntValue(v any) (n int, ok bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		if n == int64(int(n)) {
			return int(n), true
		}
	case uint64:
		if n <= math.MaxInt32 {
			return int(n), true
		}
	case float64:
		if n == math.Trunc(n) && math.Abs(n) <= math.MaxInt32 {
			return int(n), true
		}
	}
	return 0, false
}

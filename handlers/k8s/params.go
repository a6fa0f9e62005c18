package k8s

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/responder-sre/responder/handlers"
)

// reader reads typed params and collects errors. In static mode (rule load) templated values are
// unknown: they read as absent and are checked once rendered.
type reader struct {
	p      handlers.Params
	static bool
	errs   []error
}

func (r *reader) fail(format string, args ...any) {
	r.errs = append(r.errs, fmt.Errorf(format, args...))
}

func (r *reader) err() error {
	if len(r.errs) == 0 {
		return nil
	}
	return &handlers.Error{Reason: handlers.ReasonBadParam, Err: errors.Join(r.errs...)}
}

// raw returns the value of name; known is false when absent or templated (static mode).
func (r *reader) raw(name string) (v any, present, known bool) {
	v, ok := r.p[name]
	if !ok || v == nil {
		return nil, false, false
	}
	if s, isStr := v.(string); isStr && r.static && handlers.IsTemplate(s) {
		return v, true, false
	}
	return v, true, true
}

func (r *reader) str(name string) (string, bool) {
	v, _, known := r.raw(name)
	if !known {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		r.fail("param %q must be a string, not %T", name, v)
		return "", false
	}
	return s, true
}

func (r *reader) boolean(name string) bool {
	v, _, known := r.raw(name)
	if !known {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		r.fail("param %q must be a boolean, not %T", name, v)
	}
	return b
}

func (r *reader) integer(name string) (int, bool) {
	v, _, known := r.raw(name)
	if !known {
		return 0, false
	}
	n, ok := toInt(v)
	if !ok {
		r.fail("param %q must be an integer, not %v", name, v)
	}
	return n, ok
}

func toInt(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case int64:
		return int(n), n == int64(int(n))
	case uint64:
		return int(n), n <= math.MaxInt32
	case float64:
		return int(n), n == math.Trunc(n) && math.Abs(n) <= math.MaxInt32
	}
	return 0, false
}

// duration reads a positive duration, def when absent or unknown.
func (r *reader) duration(name string, def time.Duration) time.Duration {
	s, ok := r.str(name)
	if !ok {
		return def
	}
	d, err := handlers.ParseDuration(s)
	if err != nil {
		r.fail("param %q: %v", name, err)
		return def
	}
	if d <= 0 {
		r.fail("param %q must be positive, got %s", name, s)
		return def
	}
	return d
}

// quantity is an absolute count or a percentage (min_healthy).
type quantity struct {
	n       int
	percent bool
}

func (q quantity) String() string {
	if q.percent {
		return strconv.Itoa(q.n) + "%"
	}
	return strconv.Itoa(q.n)
}

// of returns the absolute count for a total: a percentage rounds up, like a PodDisruptionBudget's
// minAvailable.
func (q quantity) of(total int) int {
	if !q.percent {
		return q.n
	}
	return (q.n*total + 99) / 100
}

func (r *reader) quantity(name string, def quantity) quantity {
	v, _, known := r.raw(name)
	if !known {
		return def
	}
	if n, ok := toInt(v); ok {
		if n < 0 {
			r.fail("param %q must not be negative, got %d", name, n)
			return def
		}
		return quantity{n: n}
	}
	s, ok := v.(string)
	if !ok {
		r.fail("param %q must be an integer or a percentage like \"50%%\", not %T", name, v)
		return def
	}
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || pct && n > 100 {
		r.fail("param %q must be a non-negative integer or a percentage from 0%% to 100%%, got %q", name, s)
		return def
	}
	return quantity{n: n, percent: pct}
}

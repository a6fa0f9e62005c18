package postgres

import (
	"errors"
	"fmt"
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

// str returns the string param name; ok is false when absent or templated at load.
func (r *reader) str(name string) (string, bool) {
	v, present := r.p[name]
	if !present || v == nil {
		return "", false
	}
	s, isStr := v.(string)
	if !isStr {
		r.fail("param %q must be a string, not %T", name, v)
		return "", false
	}
	if r.static && handlers.IsTemplate(s) {
		return "", false
	}
	if s == "" {
		r.fail("param %q is empty", name)
		return "", false
	}
	return s, true
}

func (r *reader) boolean(name string, def bool) bool {
	v, present := r.p[name]
	if !present || v == nil {
		return def
	}
	if s, isStr := v.(string); isStr && r.static && handlers.IsTemplate(s) {
		return def
	}
	b, ok := v.(bool)
	if !ok {
		r.fail("param %q must be a boolean, not %T", name, v)
		return def
	}
	return b
}

// duration reads a positive duration, def when absent or templated at load.
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

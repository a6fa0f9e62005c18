package k8s

import (
	"strconv"
	"strings"

	"github.com/responder-sre/responder/handlers"
)

// reader is the shared param reader plus the param checks the k8s handlers share.
type reader struct {
	*handlers.ParamReader
}

func newReader(p handlers.Params, static bool) reader {
	return reader{handlers.NewParamReader(p, static)}
}

// namespace reads param "namespace" and checks that the handlers may touch it; "" when unknown.
func (r reader) namespace(b *base) string {
	ns, ok := r.String("namespace")
	if ok {
		if err := b.checkNamespace(ns); err != nil {
			r.Add(err)
		}
	}
	return ns
}

// object reads the object name param ("pod", "name") and checks it; "" when unknown.
func (r reader) object(param string) string {
	v, ok := r.String(param)
	if ok {
		if err := checkObjectName(param, v); err != nil {
			r.Add(err)
		}
	}
	return v
}

// kind reads param "kind", one of allowed in any case; "" when unknown or not allowed.
func (r reader) kind(allowed ...string) string {
	k, ok := r.String("kind")
	if !ok {
		return ""
	}
	kind, err := parseKind(k, allowed...)
	if err != nil {
		r.Add(err)
	}
	return kind
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

// quantity reads an integer or a percentage like "50%", def when unknown or invalid (an error).
func (r reader) quantity(name string, def quantity) quantity {
	v, _, known := r.Raw(name)
	if !known {
		return def
	}
	if n, ok := handlers.IntValue(v); ok {
		if n < 0 {
			r.Failf("param %q must not be negative, got %d", name, n)
			return def
		}
		return quantity{n: n}
	}
	s, ok := v.(string)
	if !ok {
		r.Failf("param %q must be an integer or a percentage like \"50%%\", not %T", name, v)
		return def
	}
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || pct && n > 100 {
		r.Failf("param %q must be a non-negative integer or a percentage from 0%% to 100%%, got %q", name, s)
		return def
	}
	return quantity{n: n, percent: pct}
}

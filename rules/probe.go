package rules

import (
	"math"
	"slices"
	"strings"
)

// probe("name") in expressions and templates (issue 19) answers from what the engine knows about
// responder's probe called name: the firing snapshot firing() reads, taken once per batch (no
// I/O inside expressions). A failing probe is a firing alert with source probe and alertname the
// probe's name; so
//
//   - while such an alert is firing: {success: false, value: its value (NaN if it has none)};
//   - otherwise: {success: true, value: NaN}. A healthy probe sends no alert, so the engine knows
//     no value for it; and a probe responder does not run (a typo) is indistinguishable from a
//     healthy one here, which is why rule loading refuses a name the config's probes do not
//     define when it defines any (ProbeCatalog).

// ProbeResult is what probe(name) returns.
type ProbeResult struct {
	// Success is false while the probe's alert is firing.
	Success bool `expr:"success"`
	// Value is the firing alert's value (the probe's last measurement: a latency, a lag, a free
	// ratio...); NaN when the probe is not firing or its alert carries none.
	Value float64 `expr:"value"`
}

// ProbeSet is implemented by a FiringSet that knows the probes' firing alerts. Probe reports the
// result of the probe called name, and false when no alert of it is firing (then probe() answers
// success with an unknown value).
type ProbeSet interface {
	Probe(name string) (ProbeResult, bool)
}

// ProbeCatalog is implemented by a Catalog that knows the names of the configured probes. When
// ProbeNames returns any, a literal probe("name") must name one of them; with none (no probes
// configured, or rules checked without a config), names are not checked.
type ProbeCatalog interface {
	ProbeNames() []string
}

func fnProbe(params ...any) (any, error) {
	e, err := envOf(params[0])
	if err != nil {
		return nil, err
	}
	name, _ := params[1].(string)
	if ps, ok := e.firing.(ProbeSet); ok {
		if r, ok := ps.Probe(name); ok {
			return r, nil
		}
	}
	return ProbeResult{Success: true, Value: math.NaN()}, nil
}

// checkProbes reports the literal probe names recorded since from (p.use.probes) that the catalog's
// probes do not define, at line.
func (p *parser) checkProbes(line int, where string, from int) {
	pc, ok := p.cat.(ProbeCatalog)
	if !ok {
		return
	}
	known := pc.ProbeNames()
	if len(known) == 0 {
		return
	}
	for _, name := range p.use.probes[from:] {
		if !slices.Contains(known, name) {
			p.errorf(line, "%s: unknown probe %q (probes: %s)", where, name, strings.Join(known, ", "))
		}
	}
}

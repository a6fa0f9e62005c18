package probe

import (
	"context"
	"fmt"
	"math"
	"runtime/debug"
)

// safeRun is run for the probes' loops: a panic in one run (a check, firing_when, the state
// machine, a bug) fails that run only, like a run whose state could not be saved, and the probe
// runs again at its next interval. It never ends the process.
func (r *Runner) safeRun(ctx context.Context, p *probe) (res Result, err error) {
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		r.log.Error("panic recovered in a probe run; the run failed, the probe goes on", "kind", "probe", "probe", p.cfg.Name,
			"panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		if r.o.OnPanic != nil {
			r.o.OnPanic()
		}
		res, err = Result{Probe: p.cfg.Name, Kind: p.kind, Value: math.NaN()}, fmt.Errorf("internal_error: panic in probe %s: %v", p.cfg.Name, v)
	}()
	return r.run(ctx, p)
}

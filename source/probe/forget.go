package probe

// Forget deletes the metric series of the runner's probes (responder_probe_success and
// responder_probe_duration_seconds): a configuration reload removed them, and a series left
// behind would report a probe that no longer runs. Call it once the runner has stopped.
func (r *Runner) Forget() {
	for _, p := range r.probes {
		r.m.success.DeleteLabelValues(p.cfg.Name, p.kind)
		r.m.duration.DeleteLabelValues(p.cfg.Name, p.kind)
	}
}

package config

// ProbeConfig is one health-check probe (the probes issue): a name, a schedule, labels and exactly
// one kind. The probe package owns its semantics; this file owns its YAML shape and validation.
type ProbeConfig struct {
	Name     string            `yaml:"name"`
	Interval Duration          `yaml:"interval"`
	Timeout  Duration          `yaml:"timeout"`
	Labels   map[string]string `yaml:"labels"`
	// Raw kinds until the probes work fills them in.
	HTTP map[string]any `yaml:"http,omitempty"`
}

// validateProbes checks the probes section.
func (c *Config) validateProbes(_ *checker) {}

// resolveProbeSecrets reads the probes' *_file secrets.
func resolveProbeSecrets(_ *Config, _ *checker, _ options) {}

package config

import (
	"fmt"
	"regexp"
	"strings"
)

// KubernetesHandlerConfig configures the k8s.* handlers. They are enabled when Namespaces is not
// empty.
type KubernetesHandlerConfig struct {
	// Kubeconfig is a kubeconfig path, relative to the config file's directory; empty means the
	// in-cluster service account.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespaces are the only namespaces responder may touch: each a single namespace name (no
	// wildcard, no "all"), listed once. `responder rbac` renders a Role for each.
	Namespaces []string `yaml:"namespaces"`
}

// Enabled reports whether the k8s.* handlers are configured.
func (k KubernetesHandlerConfig) Enabled() bool { return len(k.Namespaces) > 0 }

// KubeconfigPath returns handlers.kubernetes.kubeconfig resolved against the config file's
// directory; "" means in-cluster.
func (c *Config) KubeconfigPath() string {
	if c.Handlers.Kubernetes.Kubeconfig == "" {
		return ""
	}
	return absPath(c.Dir, c.Handlers.Kubernetes.Kubeconfig)
}

// dns1123Label is a Kubernetes namespace name.
var dns1123Label = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// validateKubernetes checks handlers.kubernetes.
func (c *Config) validateKubernetes(ch *checker) {
	k := c.Handlers.Kubernetes
	if k.Kubeconfig != "" && strings.TrimSpace(k.Kubeconfig) == "" {
		ch.errorf("handlers.kubernetes.kubeconfig", "is blank; leave it empty for in-cluster")
	}
	if k.Kubeconfig != "" && len(k.Namespaces) == 0 {
		ch.errorf("handlers.kubernetes.namespaces", "is empty while kubeconfig is set: the k8s handlers could touch nothing; list the namespaces responder may act in")
	}
	seen := map[string]bool{}
	for i, ns := range k.Namespaces {
		key := fmt.Sprintf("handlers.kubernetes.namespaces[%d]", i)
		switch t := strings.ToLower(strings.TrimSpace(ns)); {
		case t == "" || t == "all" || t == "_all" || strings.Contains(ns, "*"):
			ch.errorf(key, "%q is empty or a wildcard; list each namespace by name", ns)
		case len(ns) > 63 || !dns1123Label.MatchString(ns):
			ch.errorf(key, "%q is not a namespace name (lower-case letters, digits and '-', at most 63)", ns)
		case seen[ns]:
			ch.errorf(key, "%q is listed twice", ns)
		}
		seen[ns] = true
	}
}

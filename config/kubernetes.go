package config

// KubernetesHandlerConfig configures the k8s.* handlers (the Kubernetes issue).
type KubernetesHandlerConfig struct {
	// Kubeconfig is a kubeconfig path; empty means in-cluster.
	Kubeconfig string `yaml:"kubeconfig"`
	// Namespaces are the only namespaces responder may touch.
	Namespaces []string `yaml:"namespaces"`
}

// validateKubernetes checks handlers.kubernetes.
func (c *Config) validateKubernetes(_ *checker) {}

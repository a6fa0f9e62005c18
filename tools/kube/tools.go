//go:build tools

// Package tools pins the Kubernetes control-plane binaries (kube-apiserver,
// kube-controller-manager, kube-scheduler, kubectl) that tests build with
// handlers/k8s/k8stest. It lives in its own module so Kubernetes'
// dependencies stay out of responder's go.mod; nothing imports it.
package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)

//go:build tools

// Package tools pins sigs.k8s.io/kwok, the fake kubelet that
// handlers/k8s/k8stest builds (cmd/kwok) and feeds the stage definitions its
// module ships under kustomize/stage. It lives in a module of its own so
// kwok's dependencies stay out of responder's go.mod; nothing imports it.
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"

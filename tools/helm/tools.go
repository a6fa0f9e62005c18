//go:build tools

// Package tools pins the Helm binary that the chart tests build with
// deploy/helmtest. It lives in its own module so Helm's dependencies stay out
// of responder's go.mod; nothing imports it.
package tools

import _ "helm.sh/helm/v3/cmd/helm"

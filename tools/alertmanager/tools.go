//go:build tools

// Package tools pins the Alertmanager binary that tests build with
// source/alertmanager/amtest. It lives in its own module so Alertmanager's
// dependencies stay out of responder's go.mod; nothing imports it.
package tools

import _ "github.com/prometheus/alertmanager/cmd/alertmanager"

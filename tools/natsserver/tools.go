//go:build tools

// Package tools pins the nats-server binary that the JetStream cluster tests
// build with bus/clustertest. It lives in its own module so the binary is
// built exactly as released (its own dependency versions, not responder's);
// nothing imports it. Its nats-server version must match responder's go.mod
// (the embedded server's), which bus/clustertest checks.
package tools

import _ "github.com/nats-io/nats-server/v2"

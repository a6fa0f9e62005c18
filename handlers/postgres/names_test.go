package postgres

import "github.com/responder-sre/responder/internal/clock"

// sleepCtx is the name this package's tests used before internal/clock held the one sleep.
var sleepCtx = clock.Sleep

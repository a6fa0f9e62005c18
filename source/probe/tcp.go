package probe

import (
	"context"
	"fmt"
	"math"
	"net"
	"time"
)

var nanValue = math.NaN()

// tcpCheck connects to addr; the value is the connect latency.
type tcpCheck struct{ addr string }

func (c tcpCheck) instance() string { return c.addr }

func (c tcpCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", c.addr)
	d := time.Since(start)
	if err != nil {
		return Measurement{Value: nanValue, Err: fmt.Errorf("connect %s: %w", c.addr, err), Duration: d}
	}
	_ = conn.Close()
	return Measurement{Value: d.Seconds(), Duration: d}
}

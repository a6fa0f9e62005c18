package probe

import (
	"context"
	"fmt"
	"syscall"
	"time"
)

// diskCheck measures the ratio of the file system holding path that unprivileged users may still
// write (statfs f_bavail / f_blocks, as df's "Use%" complement). It measures the host (or pod)
// responder runs on: under Kubernetes use node_exporter alerts or a prometheus probe instead.
type diskCheck struct{ path string }

func (c diskCheck) instance() string { return c.path }

func (c diskCheck) check(ctx context.Context) Measurement {
	start := time.Now()
	type out struct {
		st  syscall.Statfs_t
		err error
	}
	done := make(chan out, 1)
	// statfs on a hung network file system can block for minutes: do not wait past the timeout.
	go func() {
		var o out
		o.err = syscall.Statfs(c.path, &o.st)
		done <- o
	}()
	select {
	case <-ctx.Done():
		return Measurement{Value: nanValue, Err: fmt.Errorf("statfs %s: %w", c.path, ctx.Err()), Duration: time.Since(start)}
	case o := <-done:
		d := time.Since(start)
		if o.err != nil {
			return Measurement{Value: nanValue, Err: fmt.Errorf("statfs %s: %w", c.path, o.err), Duration: d}
		}
		if o.st.Blocks == 0 {
			return Measurement{Value: nanValue, Err: fmt.Errorf("statfs %s: the file system reports no blocks", c.path), Duration: d}
		}
		return Measurement{Value: float64(o.st.Bavail) / float64(o.st.Blocks), Duration: d}
	}
}

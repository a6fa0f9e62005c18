package bus

import (
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// HoldPublishes makes b's publishes wait as if messages were in flight: the Publish calls made
// until release all queue, and release sends them (as few messages as their byte bound allows).
// queued is the number of calls waiting. b must be idle (nothing in flight) when it is called.
func HoldPublishes(b *Bus) (queued func() int, release func()) {
	c := b.commit
	c.flushers.Wait() // the last flusher leaves with inflight back at 0
	c.mu.Lock()
	if c.inflight != 0 {
		c.mu.Unlock()
		panic("bus.HoldPublishes: publishes in flight; call it on an idle Bus")
	}
	c.inflight = groupInflight
	c.flushers.Add(1) // Close waits for release
	c.mu.Unlock()
	queued = func() int {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.queue)
	}
	release = func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		for range groupInflight {
			if len(c.queue) == 0 {
				c.inflight--
				continue
			}
			c.flushers.Add(1)
			go c.flush(c.takeLocked())
		}
		c.flushers.Done()
	}
	return queued, release
}

// Queued is the number of Publish calls of b waiting for a message.
func Queued(b *Bus) int {
	b.commit.mu.Lock()
	defer b.commit.mu.Unlock()
	return len(b.commit.queue)
}

// Closing reports whether Close has started refusing new Publish calls.
func Closing(b *Bus) bool {
	b.commit.mu.Lock()
	defer b.commit.mu.Unlock()
	return b.commit.closed
}

// Wedge makes b's embedded server look wedged, as errWedged describes: its health checks never
// answer until unwedge, and healthzTimeout and embeddedDownLive become the bounds given. shutdown
// shuts the real server down (Close leaves a wedged server running).
func Wedge(b *Bus, timeout, live time.Duration) (shutdown, unwedge func()) {
	e := b.emb
	release := make(chan struct{})
	e.timeout.Store(int64(timeout))
	e.downLive.Store(int64(live))
	e.hmu.Lock()
	orig := e.healthz
	e.healthz = func(srv *server.Server, o *server.HealthzOptions) *server.HealthStatus {
		<-release
		return orig(srv, o)
	}
	e.hmu.Unlock()
	var once sync.Once
	return e.shutdown, func() { once.Do(func() { close(release) }) }
}

package bus

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

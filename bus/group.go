package bus

// Group commit at intake. With fsync on every write, the embedded server stores a few thousand
// messages a second whatever their size; one message per webhook request caps intake at that
// rate. So the Publish calls that arrive while publishes are in flight wait together and go out
// as one message (the JSON array of all their alerts), and each call returns when that message
// is acknowledged: a call never returns nil before its alerts are durable.
//
//   - No linger: when fewer than groupInflight messages are in flight, a call's alerts are
//     published at once, alone. Calls accumulate only while the server is busy, so a combined
//     message costs a caller nothing it would not have waited anyway.
//   - A message is bounded by groupMaxBytes (and the server's maximum payload less room for the
//     headers); a call larger than groupMaxBytes goes alone.
//   - Each call's alerts are encoded once, on the caller's goroutine; a combined message is the
//     concatenation of the elements of their arrays, so the consumer decodes old and new messages
//     alike.
//   - A message holding one call (or several identical ones: Alertmanager's HA peers send the same
//     group) has the message id alert.BatchID of its alerts, so a group sent again within the
//     duplicate window is stored once. A combined message has an id derived from its calls'
//     batch ids: deterministic, but a group that is sent again and lands in another combination
//     is stored twice. The consumer's processing is idempotent, so that costs work, not
//     correctness.
//   - A message that fails (timeout, stream full, store error, disconnect) fails every call it
//     holds with the same error. A call whose context ends first returns at once with
//     ErrUnavailable, whether its alerts are still waiting (they are withdrawn) or already on
//     the wire (the outcome is unknown: the sender retries).
//   - A disconnect fails the messages in flight at once (their PubAck can no longer arrive), so
//     a server restart does not hold every later call behind a publish waiting for its timeout.
//   - The consumer sees a message, not the calls in it: a message that fails permanently is
//     dead-lettered whole, with the alerts of every call it carries (and replayed whole).

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
)

const (
	// groupInflight is how many messages may be in flight at once. Measured with BenchmarkPublish
	// (64 callers, embedded server): 1 beats 2, 4 and 8, by about 2x over 2. The server fsyncs
	// one message after the other, so more messages in flight only split the waiting calls into
	// smaller messages, each costing an fsync.
	groupInflight = 1
	// groupMaxBytes bounds a combined message, so that the consumer's batches stay moderate:
	// 64 requests of 10 alerts (about 3.5 KB each) fit in one.
	groupMaxBytes = 256 << 10
	// headerRoom is what the message's headers (its id) may take of the server's maximum payload.
	headerRoom = 1024
)

// pubReq is one Publish call waiting for its alerts to be durable.
type pubReq struct {
	id   string     // alert.BatchID of its alerts
	data []byte     // its alerts, encoded: a JSON array
	done chan error // receives the outcome of the message holding it (buffered)
}

// committer combines concurrent publishes into shared messages (see above).
type committer struct {
	b *Bus

	mu       sync.Mutex
	queue    []*pubReq // waiting for a message, in arrival order
	inflight int       // flushers running (each has one message in flight)
	closed   bool
	// conn is cancelled when the connection drops (and replaced): the messages in flight then
	// can no longer be acknowledged.
	conn       context.Context
	connCancel context.CancelFunc

	// stop ends every publish (Close gave up waiting for them).
	stop     context.Context
	stopNow  context.CancelFunc
	flushers sync.WaitGroup
}

func newCommitter(bg context.Context, b *Bus) *committer {
	c := &committer{b: b}
	c.stop, c.stopNow = context.WithCancel(bg)
	c.conn, c.connCancel = context.WithCancel(c.stop)
	return c
}

// submit queues r and waits for the outcome of the message holding it, or for ctx.
func (c *committer) submit(ctx context.Context, r *pubReq) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return fmt.Errorf("bus: publish: %w: closed", ErrUnavailable)
	}
	c.queue = append(c.queue, r)
	if c.inflight < groupInflight {
		c.inflight++
		batch := c.takeLocked()
		c.flushers.Add(1)
		go c.flush(batch) //nolint:contextcheck // the message outlives this call: it carries other calls too (Close bounds it)
	}
	c.mu.Unlock()
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if i := slices.Index(c.queue, r); i >= 0 {
		c.queue = slices.Delete(c.queue, i, i+1)
	}
	c.mu.Unlock()
	select {
	case err := <-r.done: // answered meanwhile
		return err
	default:
		return fmt.Errorf("bus: publish: %w: %w", ErrUnavailable, context.Cause(ctx))
	}
}

// takeLocked removes the next message's requests from the queue: at least one, then as many as
// fit in its byte bound.
func (c *committer) takeLocked() []*pubReq {
	limit := min(groupMaxBytes, int(c.b.nc.MaxPayload())-headerRoom)
	size, n := len(c.queue[0].data), 1
	for n < len(c.queue) && size+len(c.queue[n].data) <= limit {
		size += len(c.queue[n].data)
		n++
	}
	batch := slices.Clone(c.queue[:n])
	c.queue = slices.Delete(c.queue, 0, n)
	return batch
}

// flush publishes batch, answers its requests, and goes on with what queued meanwhile until the
// queue is empty.
func (c *committer) flush(batch []*pubReq) {
	defer c.flushers.Done()
	for {
		err := c.publish(batch)
		for _, r := range batch {
			r.done <- err
		}
		c.mu.Lock()
		if len(c.queue) == 0 {
			c.inflight--
			c.mu.Unlock()
			return
		}
		batch = c.takeLocked()
		c.mu.Unlock()
	}
}

// publish sends batch as one message and waits for its PubAck.
func (c *committer) publish(batch []*pubReq) error {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(conn, defaultPublishTimeout)
	defer cancel()
	id, data := combine(batch)
	c.b.m.batchRequests.Observe(float64(len(batch)))
	err := c.b.publishMsg(ctx, c.b.signed(id, data))
	if err != nil && conn.Err() != nil && c.stop.Err() == nil {
		return fmt.Errorf("bus: publish: %w: disconnected while waiting for the ack", ErrUnavailable)
	}
	return err
}

// disconnected fails the messages in flight: their acks are lost with the connection.
func (c *committer) disconnected() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.connCancel()
	c.conn, c.connCancel = context.WithCancel(c.stop)
}

// close refuses new requests and waits for the queued and in-flight ones to be answered; when ctx
// ends first, it fails them (their publishes are cancelled) and waits for that.
func (c *committer) close(ctx context.Context) error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	done := make(chan struct{})
	go func() { c.flushers.Wait(); close(done) }()
	var err error
	select {
	case <-done:
	case <-ctx.Done():
		err = fmt.Errorf("bus: close: publishes still in flight: %w", ctx.Err())
	}
	c.stopNow()
	<-done
	return err
}

// combine returns the message id and body of batch: a request's own when it is alone (or its
// copies are), else the concatenation of their arrays' elements under an id derived from their
// sorted batch ids. Requests with the same batch id (the same alerts) are carried once.
func combine(batch []*pubReq) (id string, data []byte) {
	if len(batch) == 1 {
		return batch[0].id, batch[0].data
	}
	uniq := make([]*pubReq, 0, len(batch))
	seen := make(map[string]bool, len(batch))
	size := 1
	for _, r := range batch {
		if !seen[r.id] {
			seen[r.id] = true
			uniq = append(uniq, r)
			size += len(r.data) - 1
		}
	}
	if len(uniq) == 1 {
		return uniq[0].id, uniq[0].data
	}
	ids := make([]string, len(uniq))
	data = make([]byte, 0, size)
	data = append(data, '[')
	for i, r := range uniq {
		ids[i] = r.id
		if i > 0 {
			data = append(data, ',')
		}
		data = append(data, r.data[1:len(r.data)-1]...)
	}
	data = append(data, ']')
	slices.Sort(ids)
	h := sha256.New()
	for _, x := range ids {
		h.Write([]byte(x))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil)[:16]), data
}

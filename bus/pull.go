package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// Why the bus pulls on its own instead of with jetstream's Fetch:
//
// A consumer with replicas (every consumer on a JetStream cluster) sends a message to a pull only
// once its group has agreed that it was delivered, but it sends the "409 Batch Completed" that
// ends a pull whose message count is used up at once, ahead of those messages. jetstream's Fetch
// ends at that status and drops its reply subject, so the messages that follow reach nobody:
// they come back only after AckWait, and when they come back as a full pull again they are lost
// again. A backlog of FetchBatch messages stalled the consumer for good (nats-server v2.15.2 sends
// the 408 that ends a pull after its replicated deliveries, not the 409).
//
// The puller keeps one inbox for as long as Consume runs. Each pull replies to a subject of its
// own under it, so a status ends only its own pull, and a message that arrives after its pull
// ended waits in the inbox and starts the next pull's result.

const (
	// pullGrace is how long after a pull's expiry the puller waits for the server's answer before
	// it counts the pull as lost (a server gone away, a request dropped at a leader change).
	pullGrace = time.Second
	// inboxFetches is how many full fetches the inbox holds before the client drops messages (a
	// pull and the late messages of the one before fit with room to spare).
	inboxFetches = 4
)

var errConsumerGone = errors.New("bus: the durable consumer is gone")

// puller pulls messages of the durable consumer into one inbox.
type puller struct {
	nc      *nats.Conn
	subject string // the consumer's next-message API subject
	prefix  string // each pull replies to prefix.<n>
	sub     *nats.Subscription
	ch      chan *nats.Msg
	pulls   atomic.Uint64
}

// pullRequest is JetStream's request for the next messages of a pull consumer.
type pullRequest struct {
	Batch    int           `json:"batch"`
	MaxBytes int           `json:"max_bytes,omitempty"`
	Expires  time.Duration `json:"expires,omitempty"`
}

func newPuller(nc *nats.Conn, stream, durable string, batch int) (*puller, error) {
	p := &puller{
		nc:      nc,
		subject: fmt.Sprintf("$JS.API.CONSUMER.MSG.NEXT.%s.%s", stream, durable),
		prefix:  nc.NewRespInbox(),
		ch:      make(chan *nats.Msg, inboxFetches*batch+16),
	}
	var err error
	if p.sub, err = nc.ChanSubscribe(p.prefix+".*", p.ch); err != nil {
		return nil, fmt.Errorf("bus: subscribe the consumer's inbox: %w", err)
	}
	return p, nil
}

// close unsubscribes the inbox and returns the messages that were waiting in it: the caller hands
// them back (Nak), so that another consumer gets them now rather than after AckWait.
func (p *puller) close() []*delivery {
	_ = p.sub.Unsubscribe()
	var left []*delivery
	for {
		select {
		case m := <-p.ch:
			if isDelivery(m) {
				left = append(left, &delivery{m, p.nc})
			}
		default:
			return left
		}
	}
}

// pull returns up to n messages and maxBytes bytes. Messages already waiting in the inbox are
// returned at once; otherwise it asks the server for them, waiting at most expires for the first
// (the server answers at the end of expires when none came), and returns when n messages or
// maxBytes bytes came, when the server ended the pull, or when ctx is done (with what came).
func (p *puller) pull(ctx context.Context, n, maxBytes int, expires time.Duration) ([]*delivery, error) {
	var got []*delivery
	size := 0
waiting:
	for len(got) < n && size < maxBytes {
		select {
		case m := <-p.ch:
			if isDelivery(m) {
				got, size = append(got, &delivery{m, p.nc}), size+m.Size()
			}
		default:
			break waiting
		}
	}
	if len(got) > 0 {
		return got, nil
	}

	reply := fmt.Sprintf("%s.%d", p.prefix, p.pulls.Add(1))
	body, err := json.Marshal(pullRequest{Batch: n, MaxBytes: maxBytes, Expires: expires})
	if err != nil {
		return nil, err
	}
	if err := p.nc.PublishRequest(p.subject, reply, body); err != nil {
		return nil, err
	}
	timer := time.NewTimer(expires + pullGrace)
	defer timer.Stop()
	for {
		select {
		case m := <-p.ch:
			if !isDelivery(m) {
				if m.Subject != reply {
					continue // the end of an earlier pull
				}
				done, err := pullStatus(m)
				if done {
					return got, err
				}
				continue
			}
			got, size = append(got, &delivery{m, p.nc}), size+m.Size()
			if len(got) >= n || size >= maxBytes {
				return got, nil
			}
		case <-timer.C:
			return got, nil
		case <-ctx.Done():
			return got, nil
		}
	}
}

// isDelivery reports whether m is a message of the stream (its reply subject is where it is
// acknowledged) rather than a status of a pull.
func isDelivery(m *nats.Msg) bool {
	return strings.HasPrefix(m.Reply, "$JS.ACK.")
}

// pullStatus reads a status ending (or not) a pull: done is false for a heartbeat; err is set
// when the pull cannot succeed whatever is retried at once.
func pullStatus(m *nats.Msg) (done bool, err error) {
	status, descr := m.Header.Get("Status"), m.Header.Get("Description")
	switch status {
	case "100": // idle heartbeat or flow control
		return false, nil
	case "404", "408": // no messages, request timeout
		return true, nil
	case "409":
		// Batch Completed, Message Size Exceeds MaxBytes, Leadership Change, Exceeded MaxWaiting:
		// the pull is over, the next one goes on. Consumer Deleted is for the operator.
		if strings.Contains(strings.ToLower(descr), "consumer deleted") {
			return true, errConsumerGone
		}
		return true, nil
	case "503":
		return true, fmt.Errorf("bus: pull: %w: no JetStream server answers", ErrUnavailable)
	default:
		return true, fmt.Errorf("bus: pull: status %s %s", status, descr)
	}
}

// delivery is a message of the stream as a pull delivered it, with the acknowledgements
// JetStream understands (published to its reply subject, as jetstream.Msg does).
type delivery struct {
	m  *nats.Msg
	nc *nats.Conn
}

func (d *delivery) Data() []byte          { return d.m.Data }
func (d *delivery) Headers() nats.Header  { return d.m.Header }
func (d *delivery) Subject() string       { return d.m.Subject }
func (d *delivery) Ack() error            { return d.reply("+ACK") }
func (d *delivery) Nak() error            { return d.reply("-NAK") }
func (d *delivery) InProgress() error     { return d.reply("+WPI") }
func (d *delivery) TermWithReason(reason string) error {
	return d.reply("+TERM " + reason)
}

// NakWithDelay hands the message back for redelivery after delay.
func (d *delivery) NakWithDelay(delay time.Duration) error {
	return d.reply(fmt.Sprintf(`-NAK {"delay": %d}`, delay.Nanoseconds()))
}

// Metadata is what the reply subject says of the delivery: sequences, delivery count, time.
func (d *delivery) Metadata() (*nats.MsgMetadata, error) { return d.m.Metadata() }

func (d *delivery) reply(body string) error {
	if d.m.Reply == "" {
		return nats.ErrMsgNoReply
	}
	return d.nc.Publish(d.m.Reply, []byte(body))
}

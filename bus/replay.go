package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// DeadLetterInfo is what the bus knows of a message it is dead-lettering.
type DeadLetterInfo struct {
	MsgID  string
	Data   []byte
	Reason string // "kind: error", kind being undecodable or permanent
	// Deliveries is how often the message was delivered, the last one included.
	Deliveries uint64
}

// DeadLetterRecorder is an optional extension of Processor: when the Processor implements it, the
// bus calls RecordDeadLetter instead of DeadLetter, with the delivery count too.
type DeadLetterRecorder interface {
	RecordDeadLetter(ctx context.Context, d DeadLetterInfo) error
}

// recordDeadLetter hands a message to p's RecordDeadLetter, or DeadLetter without it.
func recordDeadLetter(ctx context.Context, p Processor, it item, reason string) error {
	if r, ok := p.(DeadLetterRecorder); ok {
		return r.RecordDeadLetter(ctx, DeadLetterInfo{MsgID: it.msg.ID, Data: it.deadData(), Reason: reason, Deliveries: it.msg.Delivered})
	}
	return p.DeadLetter(ctx, it.msg.ID, it.deadData(), reason)
}

// Republish stores data (a message body as the stream held it) again under msgID, for a dead
// letter's replay, and returns after the PubAck. duplicate is true when the stream already held
// msgID within its duplicate window (a replay repeated): nothing new was stored. Errors wrap
// ErrUnavailable or ErrStreamFull.
func (b *Bus) Republish(ctx context.Context, msgID string, data []byte) (duplicate bool, err error) {
	if msgID == "" {
		return false, errors.New("bus: republish: empty message id")
	}
	if !b.nc.IsConnected() {
		return false, fmt.Errorf("bus: republish: %w: %s", ErrUnavailable, strings.ToLower(b.nc.Status().String()))
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultPublishTimeout)
		defer cancel()
	}
	// Not counted in bus_publish_total (intake's publishes): the caller counts its replays.
	// Signed with this replica's key: a replay is an operator's decision (the API's admin token).
	ack, err := b.js.PublishMsg(ctx, b.signed(msgID, data))
	if err != nil {
		return false, classify(err)
	}
	return ack.Duplicate, nil
}

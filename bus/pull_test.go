package bus

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestPullStatus(t *testing.T) {
	for _, tc := range []struct {
		status, descr string
		done          bool
		err           error // nil: none; errAny: any error
	}{
		{"100", "Idle Heartbeat", false, nil},
		{"404", "No Messages", true, nil},
		{"408", "Request Timeout", true, nil},
		{"409", "Batch Completed", true, nil},
		{"409", "Message Size Exceeds MaxBytes", true, nil},
		{"409", "Leadership Change", true, nil},
		{"409", "Exceeded MaxWaiting", true, nil},
		{"409", "Consumer Deleted", true, errConsumerGone},
		{"503", "", true, ErrUnavailable},
		{"400", "Bad Request", true, errAny},
	} {
		m := &nats.Msg{Header: nats.Header{"Status": {tc.status}, "Description": {tc.descr}}}
		done, err := pullStatus(m)
		if done != tc.done {
			t.Errorf("%s %s: done %v, want %v", tc.status, tc.descr, done, tc.done)
		}
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("%s %s: error %v, want none", tc.status, tc.descr, err)
		case errors.Is(tc.err, errAny) && err == nil:
			t.Errorf("%s %s: no error, want one", tc.status, tc.descr)
		case tc.err != nil && !errors.Is(tc.err, errAny) && !errors.Is(err, tc.err):
			t.Errorf("%s %s: error %v, want %v", tc.status, tc.descr, err, tc.err)
		}
	}
}

var errAny = errors.New("any error")

func TestIsDelivery(t *testing.T) {
	for reply, want := range map[string]bool{
		"$JS.ACK.RESPONDER_ALERTS.responder.1.5.5.1764842400000000000.0": true,
		"":             false, // a status
		"_INBOX.abc.1": false,
	} {
		if got := isDelivery(&nats.Msg{Reply: reply}); got != want {
			t.Errorf("isDelivery(reply %q) = %v, want %v", reply, got, want)
		}
	}
}

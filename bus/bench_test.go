package bus_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/responder-sre/responder/bus"
)

// benchClients is the number of concurrent callers (webhook requests in flight), and of raw
// publishes in flight for the baseline, as `make bench` runs them.
const benchClients = 64

// BenchmarkPublish compares Bus.Publish (benchClients concurrent callers, each waiting for its
// alerts to be durable, as the webhook does) with the raw JetStream baseline: async publishes of
// the same bodies, one message per publish, benchClients in flight, on the embedded server (fsync
// always). Each iteration of b.N is one group in each phase: the baseline runs first on a store of
// its own, then Bus.Publish on another, and the benchmark reports both rates and their ratio
// ("x-raw", Bus.Publish over the baseline, both measured in the same run). Groups of 1 alert (a
// probe, Falco) and of 10 (Alertmanager).
func BenchmarkPublish(b *testing.B) {
	for _, size := range []int{1, 10} {
		b.Run(fmt.Sprintf("alerts=%d", size), func(b *testing.B) {
			raw := benchRaw(b, size)
			bus := benchBus(b, size)
			b.ReportMetric(raw*float64(size), "raw-alerts/s")
			b.ReportMetric(bus*float64(size), "bus-alerts/s")
			b.ReportMetric(bus/raw, "x-raw")
		})
	}
}

// benchBus publishes b.N groups of size alerts through Bus.Publish from benchClients goroutines
// and returns the rate in groups (requests) per second.
func benchBus(b *testing.B, size int) float64 {
	bb := openB(b)
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchClients {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if err := bb.Publish(context.Background(), group(fmt.Sprintf("B%d", i), size)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return float64(b.N) / time.Since(start).Seconds()
}

// benchRaw publishes b.N messages of size alerts asynchronously, benchClients in flight, and
// returns the rate in messages per second.
func benchRaw(b *testing.B, size int) float64 {
	bb := openB(b)
	nc, err := nats.Connect(bb.ClientURL(), nats.Token(bb.EmbeddedToken()))
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(benchClients))
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for i := range b.N {
		data, err := json.Marshal(group(fmt.Sprintf("R%d", i), size))
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishMsgAsync(&nats.Msg{Subject: bus.DefaultSubject, Data: data}, jetstream.WithMsgID(fmt.Sprint(i)), jetstream.WithStallWait(10*time.Second)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	return float64(b.N) / time.Since(start).Seconds()
}

func openB(b *testing.B) *bus.Bus {
	bb, err := bus.Open(context.Background(), bus.Options{StoreDir: b.TempDir(), MaxMsgs: -1, MaxBytes: -1})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bb.Close(context.Background()) })
	return bb
}

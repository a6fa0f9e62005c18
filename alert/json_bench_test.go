package alert

import (
	"encoding/json"
	"testing"
)

// BenchmarkJSON compares the alert's codec with encoding/json's reflection on one message of 10
// alerts (what a webhook request carries over the bus).
func BenchmarkJSON(b *testing.B) {
	as := make([]Alert, 10)
	for i := range as {
		as[i] = sampleAlerts()[0]
	}
	data, err := AppendListJSON(nil, as)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("marshal/encoding_json", func(b *testing.B) {
		for range b.N {
			_, _ = json.Marshal(as)
		}
	})
	b.Run("marshal/append", func(b *testing.B) {
		var buf []byte
		for range b.N {
			buf, _ = AppendListJSON(buf[:0], as)
		}
	})
	b.Run("unmarshal/encoding_json", func(b *testing.B) {
		for range b.N {
			var out []Alert
			_ = json.Unmarshal(data, &out)
		}
	})
	b.Run("unmarshal/parse", func(b *testing.B) {
		for range b.N {
			_, _ = ParseListJSON(data)
		}
	})
}

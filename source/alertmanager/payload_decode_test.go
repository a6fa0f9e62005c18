package alertmanager

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/alertmanager/notify/webhook"
	"github.com/prometheus/alertmanager/template"

	"github.com/responder-sre/responder/alert"
)

// checkPayload checks parseMessage against encoding/json on body: where the fast path accepts,
// encoding/json accepts too and both decode the same; it returns whether the fast path accepted.
func checkPayload(t *testing.T, body []byte) bool {
	t.Helper()
	var want webhook.Message
	wantErr := json.Unmarshal(body, &want)
	var got webhook.Message
	if !parseMessage(body, &got) {
		return false
	}
	if wantErr != nil {
		t.Fatalf("parseMessage accepts %q, encoding/json refuses it: %v", body, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("parseMessage on %q:\n got %s\nwant %s", body, dump(got), dump(want))
	}
	return true
}

// dump shows a message with the Data it points to.
func dump(m webhook.Message) string {
	if m.Data == nil {
		return fmt.Sprintf("%#v", m)
	}
	return fmt.Sprintf("%#v %#v", m, *m.Data)
}

// payloadSeeds are odd bodies, for the table test and the fuzzer.
var payloadSeeds = []struct {
	name, body string
	handled    bool // the fast path decodes it (else encoding/json does, or refuses it)
}{
	{"empty object", `{}`, true},
	{"version only", `{"version":"4"}`, true},
	{"whitespace", " \t\r\n{ \"version\" :\n\"4\" , \"alerts\" : [ { \"status\" : \"firing\" } ] }\n ", true},
	{"empty alerts", `{"version":"4","alerts":[]}`, true},
	{"null alerts", `{"version":"4","alerts":null}`, true},
	{"null alert", `{"version":"4","alerts":[null,{"status":"resolved"}]}`, true},
	{"data key with null value allocates Data", `{"receiver":null}`, true},
	{"nulls", `{"version":null,"groupKey":null,"truncatedAlerts":null,"status":null,"groupLabels":null,"commonLabels":null,
		"alerts":[{"status":null,"labels":null,"annotations":null,"startsAt":null,"endsAt":null,"generatorURL":null,"fingerprint":null}]}`, true},
	{"empty objects", `{"groupLabels":{},"commonLabels":{},"commonAnnotations":{},"routeLabels":{},"alerts":[{}]}`, true},
	{"all fields", `{"version":"4","groupKey":"{}:{a=\"b\"}","truncatedAlerts":18446744073709551615,"receiver":"r","status":"resolved",
		"notification_reason":"x","groupLabels":{"a":"b"},"commonLabels":{"a":"b","c":"d"},"commonAnnotations":{"s":"t"},"routeLabels":{"r":"s"},
		"externalURL":"http://am:9093","alerts":[{"status":"resolved","labels":{"alertname":"A"},"annotations":{"summary":"s"},
		"startsAt":"2026-11-21T07:20:14.65Z","endsAt":"2026-11-21T08:00:00+05:30","generatorURL":"http://p/graph?a=1\u0026b=2","fingerprint":"0123456789abcdef"}]}`, true},
	{"escapes", `{"groupKey":"\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00\u0000","alerts":[{"labels":{"\u0061lertname":"x\ny"}}]}`, true},
	{"unicode", `{"groupKey":"é€😀","alerts":[{"labels":{"ключ":"значение","😀":""}}]}`, true},
	{"repeated label keeps the last", `{"alerts":[{"labels":{"a":"1","a":"2"}}]}`, true},
	{"unknown fields", `{"x":1,"y":{"a":[1,{"b":null}],"c":"\u00e9"},"z":[[],{}],"version":"4","alerts":[{"u":true,"v":false,"w":[null]}]}`, true},
	{"big numbers in unknown fields", `{"n":123456789012345678901234567890e999999,"m":-0.5E-3,"o":[1e400,-1e-400]}`, true},
	{"repeated unknown key", `{"x":1,"x":2}`, true},
	{"escaped known key", `{"\u0076ersion":"4"}`, true},
	{"truncatedAlerts", `{"version":"4","truncatedAlerts":3}`, true},
	{"embedded struct's name is no key", `{"Data":{"receiver":"r"},"version":"4"}`, true},

	{"key differing in case", `{"Version":"4"}`, false},
	{"alert key differing in case", `{"alerts":[{"Status":"firing"}]}`, false},
	{"key folding to a name", "{\"\u017ftatus\":\"firing\"}", false}, // long s folds to s
	{"escaped key differing in case", `{"\u0056ersion":"4"}`, false},
	{"repeated key", `{"version":"3","version":"4"}`, false},
	{"repeated data key", `{"commonLabels":{"a":"b"},"commonLabels":{"c":"d"}}`, false},
	{"repeated alert key", `{"alerts":[{"status":"firing","status":"resolved"}]}`, false},
	{"null label value", `{"alerts":[{"labels":{"a":null}}]}`, false},
	{"number label value", `{"alerts":[{"labels":{"a":1}}]}`, false},
	{"number where a string is expected", `{"version":4}`, false},
	{"string truncatedAlerts", `{"truncatedAlerts":"3"}`, false},
	{"negative truncatedAlerts", `{"truncatedAlerts":-1}`, false},
	{"fractional truncatedAlerts", `{"truncatedAlerts":1.0}`, false},
	{"overflowing truncatedAlerts", `{"truncatedAlerts":18446744073709551616}`, false},
	{"lone surrogate", `{"groupKey":"\ud800"}`, false},
	{"invalid utf-8", "{\"groupKey\":\"\xff\"}", false},
	{"invalid utf-8 in unknown field", "{\"x\":\"\xff\"}", false},
	{"escaped time", `{"alerts":[{"startsAt":"2026-11-21T00:00:00\u005a"}]}`, false},
	{"bad time", `{"alerts":[{"startsAt":"yesterday"}]}`, false},
	{"time without zone", `{"alerts":[{"startsAt":"2026-11-21T00:00:00"}]}`, false},
	{"number time", `{"alerts":[{"startsAt":1}]}`, false},
	{"deep unknown", `{"x":` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + `}`, false},
	{"alerts object", `{"version":"4","alerts":{}}`, false},
	{"top-level null", `null`, false},
	{"top-level array", `[]`, false},
	{"trailing garbage", `{"version":"4"} x`, false},
	{"trailing comma", `{"version":"4",}`, false},
	{"trailing comma in alerts", `{"alerts":[{},]}`, false},
	{"unterminated", `{"version":"4"`, false},
	{"invalid unknown value", `{"x":tru}`, false},
	{"invalid number", `{"x":01}`, false},
	{"control character", "{\"groupKey\":\"a\tb\"}", false},
	{"empty", ``, false},
	{"bom", "\ufeff{}", false},
}

// TestParseMessage checks the fast path against encoding/json on odd bodies, and that it handles
// (or hands over) the ones it should.
func TestParseMessage(t *testing.T) {
	for _, tc := range payloadSeeds {
		t.Run(tc.name, func(t *testing.T) {
			if got := checkPayload(t, []byte(tc.body)); got != tc.handled {
				t.Fatalf("parseMessage handled %q: %v, want %v", tc.body, got, tc.handled)
			}
		})
	}
	for name, body := range fixtures(t) {
		t.Run(name, func(t *testing.T) {
			if !checkPayload(t, body) {
				t.Fatal("parseMessage hands an Alertmanager payload to encoding/json")
			}
		})
	}
	for _, n := range []int{1, 10} {
		if !checkPayload(t, benchBody(t, n)) {
			t.Fatalf("parseMessage hands the benchmark body of %d alerts to encoding/json", n)
		}
	}
}

// TestDecodeFallback: a body the fast path hands over decodes (or fails) as it did before.
func TestDecodeFallback(t *testing.T) {
	body := `{"Version":"4","alerts":[{"Status":"firing","labels":{"alertname":"A"},"startsAt":"2026-11-21T00:00:00Z"}]}`
	p, err := decode([]byte(body), fixedNow, 0, alert.Limits{})
	if err != nil || len(p.alerts) != 1 || p.alerts[0].Status != alert.StatusFiring {
		t.Fatalf("decode(%s) = %+v, %v", body, p, err)
	}
	_, err = decode([]byte(`{"version":"4","alerts":{}}`), fixedNow, 0, alert.Limits{})
	var want webhook.Message
	wantErr := json.Unmarshal([]byte(`{"version":"4","alerts":{}}`), &want)
	if err == nil || err.Error() != "undecodable body: "+wantErr.Error() {
		t.Fatalf("decode error %v, want undecodable body: %v", err, wantErr)
	}
}

// FuzzPayloadDecode: the fast path never panics, never accepts what encoding/json refuses, and
// decodes what it accepts exactly as encoding/json does.
func FuzzPayloadDecode(f *testing.F) {
	for _, b := range fixtures(f) {
		f.Add(b)
	}
	for _, s := range payloadSeeds {
		f.Add([]byte(s.body))
	}
	f.Add(benchBody(f, 2))
	f.Fuzz(func(t *testing.T, body []byte) {
		checkPayload(t, body)
	})
}

// benchBody is a notification of n firing alerts as Alertmanager sends it, the shape the load
// harness posts (about 800 bytes for one alert).
func benchBody(tb testing.TB, n int) []byte {
	tb.Helper()
	d := &template.Data{Receiver: "responder", Status: "firing", ExternalURL: "http://alertmanager:9093",
		GroupLabels: template.KV{"alertname": "KubePodCrashLooping"}, CommonLabels: template.KV{"alertname": "KubePodCrashLooping", "namespace": "shop"},
		CommonAnnotations: template.KV{}, RouteLabels: template.KV{}}
	for i := range n {
		l := template.KV{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": fmt.Sprintf("checkout-%d", i), "container": "app",
			"severity": "critical", "job": "kube-state-metrics", "prometheus": "monitoring/k8s"}
		d.Alerts = append(d.Alerts, template.Alert{Status: "firing", Labels: l, StartsAt: fixedNow.Add(-time.Hour),
			Annotations: template.KV{"summary": "Pod is crash looping.", "description": "Pod shop/checkout is in waiting state (reason: CrashLoopBackOff).",
				"runbook_url": "https://runbooks.prometheus-operator.dev/runbooks/kubernetes/kubepodcrashlooping"},
			GeneratorURL: "http://prometheus:9090/graph?g0.expr=up&g0.tab=1", Fingerprint: alert.Fingerprint(l)})
	}
	b, err := json.Marshal(webhook.Message{Data: d, Version: "4", GroupKey: `{}:{alertname="KubePodCrashLooping"}`})
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// BenchmarkDecodePayload measures the decoding of a notification of 1 and of 10 alerts: ns/op and
// allocs/op are the fast path's (parseMessage); json-ns/op is json.Unmarshal's on the same body in
// the same run, and x-json the ratio of the two (the fast path's time over encoding/json's).
func BenchmarkDecodePayload(b *testing.B) {
	for _, n := range []int{1, 10} {
		b.Run(fmt.Sprintf("alerts=%d", n), func(b *testing.B) {
			body := benchBody(b, n)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			start := time.Now()
			for range b.N {
				var m webhook.Message
				if err := json.Unmarshal(body, &m); err != nil {
					b.Fatal(err)
				}
			}
			base := time.Since(start)
			b.ResetTimer() // ns/op and allocs/op: the fast path alone
			start = time.Now()
			for range b.N {
				var m webhook.Message
				if !parseMessage(body, &m) {
					b.Fatal("parseMessage hands the body to encoding/json")
				}
			}
			fast := time.Since(start)
			b.ReportMetric(float64(base.Nanoseconds())/float64(b.N), "json-ns/op")
			b.ReportMetric(fast.Seconds()/base.Seconds(), "x-json")
		})
	}
}

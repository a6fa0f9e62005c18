package alert

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/jsonscan"
)

// The reference for every test here is encoding/json.

func sampleAlerts() []Alert {
	t0 := time.Date(2026, 11, 22, 3, 4, 5, 123456000, time.UTC)
	v, tiny, huge, neg := 0.25, 1e-7, 1e21, math.Copysign(0, -1)
	return []Alert{
		{Name: "KubePodCrashLooping", Source: SourceAlertmanager, Status: StatusFiring, StartsAt: t0, ReceivedAt: t0.Add(time.Second),
			Labels:      map[string]string{NameLabel: "KubePodCrashLooping", "namespace": "shop", "pod": "web-1"},
			Annotations: map[string]string{"summary": `pod <web-1> "restarts" & \ fails`, "runbook": "https://x/y?a=1&b=2"},
			Fingerprint: "0123456789abcdef", GeneratorURL: "http://prom:9090/graph?g0.expr=up%3D%3D0"},
		{Name: "probe", Source: SourceProbe, Status: StatusResolved, Value: &v, Fence: 42,
			StartsAt: t0, EndsAt: t0.In(time.FixedZone("x", -5*3600-30*60)), ReceivedAt: t0,
			Labels: map[string]string{"ünïcode": "line\u2028sep\u2029 tab\t nl\n cr\r bs\b ff\f nul\x00 esc\x1b del\x7f", "bad": "\xff\xfe"}},
		{Labels: map[string]string{}, Annotations: map[string]string{}, Value: &tiny},
		{Value: &huge},
		{Value: &neg, StartsAt: t0.In(time.FixedZone("y", 14*3600))},
		{},
	}
}

func TestAppendJSONIsEncodingJSON(t *testing.T) {
	for i, a := range sampleAlerts() {
		want, err := json.Marshal(a)
		if err != nil {
			t.Fatal(err)
		}
		got, err := a.AppendJSON(nil)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("alert %d:\n got %s (%v)\nwant %s", i, got, err, want)
		}
	}
	as := sampleAlerts()
	want, _ := json.Marshal(as)
	if got, err := AppendListJSON(nil, as); err != nil || !bytes.Equal(got, want) {
		t.Errorf("list:\n got %s (%v)\nwant %s", got, err, want)
	}
	list, err := AppendListJSON(nil, nil)
	if err != nil || string(list) != "null" {
		t.Errorf("nil list: %s %v", list, err)
	}
}

func TestAppendJSONRefusesWhatEncodingJSONRefuses(t *testing.T) {
	nan := math.NaN()
	for name, a := range map[string]Alert{
		"NaN value":      {Value: &nan},
		"year 10000":     {StartsAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		"ends before 0":  {EndsAt: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
		"24h zone":       {ReceivedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("z", 24*3600))},
		"received 10000": {ReceivedAt: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := json.Marshal(a); err == nil {
			t.Fatalf("%s: encoding/json accepts it", name)
		}
		if b, err := a.AppendJSON(nil); err == nil {
			t.Errorf("%s: AppendJSON = %s, want an error", name, b)
		}
		if b, err := AppendListJSON(nil, []Alert{{}, a}); err == nil {
			t.Errorf("%s: AppendListJSON = %s, want an error", name, b)
		}
	}
}

// jsonSeeds are inputs for the decoder: what AppendJSON writes, and the shapes it must leave to
// encoding/json.
func jsonSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	as := sampleAlerts()
	for _, a := range as {
		b, err := a.AppendJSON(nil)
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, b)
	}
	list, err := AppendListJSON(nil, as)
	if err != nil {
		t.Fatal(err)
	}
	seeds = append(seeds, list)
	for _, s := range []string{
		`null`, `[]`, `[null]`, `{}`, ` { "name" : "a" , "labels" : { "k" : "v" } } `,
		`{"name":"a","name":"b"}`, `{"Name":"a"}`, `{"nAme":"a","extra":[1,{"x":null}]}`,
		`{"labels":{"a":"1","a":"2"}}`, `{"labels":null,"annotations":null,"value":null,"startsAt":null,"fence":null,"name":null}`,
		`{"name":"\u00e9\ud83d\ude00\/\b\f\n\r\t\"\\"}`, `{"name":"\ud800"}`, `{"name":"\udc00\ud800"}`, `{"name":"\u12"}`,
		`{"name":"` + "\xff" + `"}`, `{"name":"` + "\x01" + `"}`, `{"value":1e400}`, `{"value":01}`, `{"value":-0.0e+5}`,
		`{"value":1.}`, `{"value":"1"}`, `{"fence":1.0}`, `{"fence":9223372036854775808}`, `{"fence":-12}`,
		`{"startsAt":"2026-01-01T00:00:00Z"}`, `{"startsAt":"2026-01-01T00:00:00"}`, `{"startsAt":"2026-01-01T00:00:00\u005a"}`,
		`{"startsAt":"2026-01-01T00:00:00.123456789+05:30"}`, `{"endsAt":1}`, `{"status":true}`, `{"labels":{"a":1}}`,
		`{"name":"a"}x`, `{"name":"a",}`, `[{"name":"a"},]`, `[{"name":"a"} {"name":"b"}]`, `{"name":"a"`, `nul`,
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

// checkDecode checks the decoder against encoding/json on data: where it accepts, both decode
// the same; ParseJSON and ParseListJSON always decode (or refuse) as encoding/json does.
func checkDecode(t *testing.T, data []byte) {
	var want Alert
	wantErr := json.Unmarshal(data, &want)
	d := decoder{jsonscan.Scanner{Data: data}}
	var fast Alert
	if d.alert(&fast) && d.End() {
		if wantErr != nil {
			t.Fatalf("decoder accepts %q, encoding/json refuses it: %v", data, wantErr)
		}
		if !reflect.DeepEqual(fast, want) {
			t.Fatalf("decoder on %q:\n got %#v\nwant %#v", data, fast, want)
		}
	}
	got, err := ParseJSON(data)
	if (err != nil) != (wantErr != nil) || wantErr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseJSON(%q) = %#v, %v; encoding/json: %#v, %v", data, got, err, want, wantErr)
	}

	var wantList []Alert
	wantErr = json.Unmarshal(data, &wantList)
	gotList, err := ParseListJSON(data)
	if (err != nil) != (wantErr != nil) || wantErr == nil && !reflect.DeepEqual(gotList, wantList) {
		t.Fatalf("ParseListJSON(%q) = %#v, %v; encoding/json: %#v, %v", data, gotList, err, wantList, wantErr)
	}
}

func TestParseJSONIsEncodingJSON(t *testing.T) {
	for _, s := range jsonSeeds(t) {
		checkDecode(t, s)
	}
}

func TestDecoderTakesWhatAppendJSONWrites(t *testing.T) {
	for _, s := range jsonSeeds(t)[:len(sampleAlerts())] {
		d := decoder{jsonscan.Scanner{Data: s}}
		var a Alert
		if !d.alert(&a) || !d.End() {
			t.Errorf("the decoder hands %s to encoding/json", s)
		}
	}
	list, _ := AppendListJSON(nil, sampleAlerts())
	if d := (decoder{jsonscan.Scanner{Data: list}}); !func() bool { _, ok := d.list(); return ok && d.End() }() {
		t.Error("the decoder hands a list to encoding/json")
	}
}

func TestParseErrorsNameTheField(t *testing.T) {
	_, err := ParseListJSON([]byte(`[{"fence":"x"}]`))
	if err == nil || !strings.Contains(err.Error(), "Alert.fence") {
		t.Fatalf("error %v does not name Alert.fence", err)
	}
}

func FuzzJSONDecode(f *testing.F) {
	for _, s := range jsonSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(checkDecode)
}

func FuzzJSONEncode(f *testing.F) {
	f.Add("KubePodCrashLooping", "pod", "web-<1>&\u2028", "https://x?a&b", 0.5, int64(1763780645), int64(123456789), 3600, int64(7), true)
	f.Add("", "", "\xff\x00", "", math.Inf(1), int64(-62135596800), int64(0), 0, int64(0), false)
	f.Fuzz(func(t *testing.T, name, key, val, url string, value float64, sec, nsec int64, offset int, fence int64, withValue bool) {
		at := time.Unix(sec, nsec).In(time.FixedZone("z", offset%(48*3600)))
		a := Alert{Name: name, Source: key, Status: Status(val), GeneratorURL: url, Fingerprint: val, StartsAt: at, EndsAt: at.Add(time.Hour),
			ReceivedAt: at.UTC(), Fence: fence, Labels: map[string]string{key: val, val: key, name: url}, Annotations: map[string]string{url: name}}
		if withValue {
			a.Value = &value
		}
		want, wantErr := json.Marshal(a)
		got, err := a.AppendJSON(nil)
		if (err != nil) != (wantErr != nil) || !bytes.Equal(got, want) {
			t.Fatalf("AppendJSON = %s, %v; encoding/json: %s, %v", got, err, want, wantErr)
		}
		if err == nil {
			checkDecode(t, got)
		}
		checkValue(t, map[string]any{name: val, key: value, url: []any{fence, withValue, nil, Status(val), map[string]string{key: url}}, "": []string{name}})
	})
}

// checkValue checks AppendJSONValue against encoding/json on v.
func checkValue(t *testing.T, v any) {
	t.Helper()
	want, wantErr := json.Marshal(v)
	got, ok := AppendJSONValue(nil, v)
	if ok && (wantErr != nil || !bytes.Equal(got, want)) {
		t.Fatalf("AppendJSONValue(%#v) = %s; encoding/json: %s, %v", v, got, want, wantErr)
	}
	if !ok && wantErr == nil && handled(v) {
		t.Fatalf("AppendJSONValue(%#v) hands it to encoding/json", v)
	}
}

// handled reports whether AppendJSONValue should encode v itself.
func handled(v any) bool {
	switch v := v.(type) {
	case float64:
		return !math.IsNaN(v) && !math.IsInf(v, 0)
	case map[string]any:
		for _, x := range v {
			if !handled(x) {
				return false
			}
		}
	case []any:
		for _, x := range v {
			if !handled(x) {
				return false
			}
		}
	case textStatus, time.Time, []byte, float32:
		return false
	}
	return true
}

// textStatus has text methods: encoding/json uses them, so AppendJSONValue leaves it.
type textStatus string

func (s textStatus) MarshalText() ([]byte, error) { return []byte("text:" + s), nil }

func TestAppendJSONValueIsEncodingJSON(t *testing.T) {
	for _, v := range []any{
		nil, "a<b>&c", true, 3, int64(-4), int32(5), uint64(6), 1.5, 1e21, 1e-7, math.Copysign(0, -1), math.NaN(),
		map[string]string{"b": "1", "a": "2"}, map[string]string(nil), []string(nil), []string{"x"}, []any(nil), []any{},
		map[string]any{"phase": Status("actions"), "step": 1, "error": "x", "nested": map[string]any{"z": []any{1, "2", nil}}},
		map[string]any(nil), textStatus("x"), map[string]any{"t": textStatus("y")}, time.Unix(0, 0), []byte("b"), float32(1.5),
	} {
		checkValue(t, v)
	}
}

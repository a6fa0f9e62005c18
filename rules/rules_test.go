package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/vocab"
)

func TestParseBadFiles(t *testing.T) {
	tests := []struct {
		file string
		want []string // every error, as file:line: message fragments
	}{
		{"syntax.yml", []string{`syntax.yml:1: YAML: did not find expected '-' indicator`}},
		{"top-key.yml", []string{`top-key.yml:1: rule file: unknown key "rule" (allowed: rules)`}},
		{"unknown-key.yml", []string{`unknown-key.yml:3: rule "typo": unknown key "whne" (allowed: name, when,`}},
		{"no-name.yml", []string{`no-name.yml:2: rule has no name`}},
		{"dup-name.yml", []string{`dup-name.yml:7: duplicate rule name "twice" (also at testdata/bad/dup-name.yml:2)`}},
		{"empty-when.yml", []string{`empty-when.yml:3: rule "nowhen": when is empty`}},
		{"when-typo.yml", []string{`when-typo.yml:3: rule "typo": when: alert has no field lables (expression column 7)`}},
		{"when-multiline.yml", []string{`when-multiline.yml:6: rule "multiline": when: alert has no field activFor (expression column 12)`}},
		{"when-not-bool.yml", []string{`when-not-bool.yml:3: rule "notbool": when: expected bool, but got string`}},
		{"bad-for.yml", []string{`bad-for.yml:4: rule "badfor": for: invalid duration "5 minutes"`}},
		{"negative-cooldown.yml", []string{`negative-cooldown.yml:4: rule "negcooldown": cooldown: duration "-1m" is negative`}},
		{"bad-mode.yml", []string{`bad-mode.yml:4: rule "badmode": mode "dry" is neither enforce nor shadow`}},
		{"bad-slack-channel.yml", []string{`bad-slack-channel.yml:4: rule "badchannel": slack_channel "incidents" is neither #name nor a channel ID`}},
		{"does-nothing.yml", []string{`does-nothing.yml:2: rule "idle" does nothing: it needs actions, escalate or on_resolved`}},
		{"bad-template.yml", []string{`bad-template.yml:8: rule "badtmpl": actions: http.request: param body: template {{ alert.nme }}: alert has no field nme`}},
		{"template-funcs.yml", []string{
			`template-funcs.yml:8: rule "badfuncs": actions: http.request: param body: template {{ humanise(alert.value) }}: unknown name humanise`,
			`template-funcs.yml:9: rule "badfuncs": actions: http.request: param headers.X-Value: template {{ printf(alert.value) }}: cannot use float64 as argument (type string) to call printf`,
		}},
		{"unterminated.yml", []string{`unterminated.yml:8: rule "unterminated": actions: http.request: param body: unterminated "{{" (missing "}}")`}},
		{"unknown-handler.yml", []string{`unknown-handler.yml:5: rule "nohandler": actions: k8s.restart_pood: unknown handler "k8s.restart_pood"`}},
		{"bad-params.yml", []string{
			`bad-params.yml:5: rule "badparams": actions: http.request: param "method" must be a string, not int`,
			`bad-params.yml:5: rule "badparams": actions: http.request: handler "http.request" has no param "verb"`,
		}},
		{"approval.yml", []string{
			`approval.yml:6: rule "badapproval": actions: http.request: approval "maybe" is neither none nor required`,
			`approval.yml:11: rule "forbidden": actions: k8s.delete_pod: handler "k8s.delete_pod" requires approval; approval: none is not allowed`,
		}},
		{"templated-host.yml", []string{`templated-host.yml:5: rule "hosttmpl": actions: http.request: the url host may not be templated`}},
		{"action-shape.yml", []string{
			`action-shape.yml:6: rule "shapes": actions: http.request: params must be a mapping`,
			`action-shape.yml:8: rule "shapes": actions: unknown key "retries" (allowed: handler, params, approval, approvals_required, timeout, id)`,
			`action-shape.yml:10: rule "shapes": actions: action has no handler`,
			`action-shape.yml:12: rule "shapes": actions: http.request: timeout: invalid duration "soon"`,
		}},
		{"verify-shape.yml", []string{
			`verify-shape.yml:4: rule "scalar": verify must be a mapping such as {within: 5m}`,
			`verify-shape.yml:10: rule "nowithin": verify: within is required`,
			`verify-shape.yml:18: rule "unknownkey": verify: unknown key "timeout" (allowed: within, when)`,
		}},
		{"verify-within.yml", []string{
			`verify-within.yml:4: rule "baddur": verify: within: invalid duration "soon"`,
			`verify-within.yml:10: rule "zero": verify: within must be more than zero`,
			`verify-within.yml:16: rule "negative": verify: within: duration "-1m" is negative`,
		}},
		{"verify-when.yml", []string{
			`verify-when.yml:4: rule "typo": verify: when: alert has no field stauts (expression column 7)`,
			`verify-when.yml:12: rule "notbool": verify: when: expected bool, but got string`,
			`verify-when.yml:18: rule "empty": verify: when is empty`,
			`verify-when.yml:24: rule "probefield": verify: when: probe() has no field sucess (expression column 21)`,
			`verify-when.yml:30: rule "probearg": verify: when: cannot use int as argument (type string) to call probe`,
		}},
		{"verify-no-actions.yml", []string{`verify-no-actions.yml:4: rule "nothingtoverify": verify needs actions: it checks that the last of them helped`}},
		{"step-ids.yml", []string{
			`step-ids.yml:5: rule "badids": actions: db.promote: id "Promote" must be a name: a lower-case letter, then lower-case letters, digits or _ (at most 63)`,
			`step-ids.yml:12: rule "badids": escalate: duplicate step id "repoint" (also at line 8)`,
		}},
		{"step-refs.yml", []string{
			`step-refs.yml:6: rule "badrefs": actions: http.request: param body: steps.promote.result.new_primary: step "promote" is a later step: a step may only read the results of earlier steps`,
			`step-refs.yml:11: rule "badrefs": actions: http.request: param body: steps.promote.result.primary: step "promote" (db.promote) has no result field "primary" (fields: new_primary, timeline)`,
			`step-refs.yml:14: rule "badrefs": actions: http.request: param body: steps.check.result.status: step "check" is this step itself`,
			`step-refs.yml:16: rule "badrefs": actions: db.promote: param cluster: steps.promote.result.new_primary: param "cluster" names what the action acts on: it may not reference an earlier step's result`,
			`step-refs.yml:18: rule "badrefs": actions: http.request: param body: steps.nope.result.status: no step has id "nope" (earlier steps of this list: promote, check)`,
			`step-refs.yml:21: rule "badrefs": escalate: http.request: param body: steps.promote.result.new_primary: step "promote" is in actions: a step may only read the results of earlier steps of its own list (escalate)`,
			`step-refs.yml:31: rule "stepsshape": actions: http.request: param headers.X-All: template {{ toJSON(steps.first.result) }}: steps is read as steps.<id>.result.<field>`,
			`step-refs.yml:31: rule "stepsshape": actions: http.request: param headers.X-Maybe: template {{ steps?.first.result.status }}: steps is read as steps.<id>.result.<field>`,
			`step-refs.yml:33: rule "stepswhen": when: steps.<id>.result.<field> is for action params, not for when`,
		}},
		{"many.yml", []string{
			`many.yml:3: rule "first": when: alert has no field nam (expression column 7)`,
			`many.yml:9: rule "second": for: invalid duration "forever"`,
			`many.yml:11: rule "second": actions: nope.nope: unknown handler "nope.nope"`,
			`many.yml:14: rule "third": mode "loud" is neither enforce nor shadow`,
			`many.yml:17: rule "third": on_resolved: http.request: param body: template {{ 1 + }}: unexpected token EOF`,
		}},
	}
	seen := map[string]bool{}
	for _, tc := range tests {
		seen[tc.file] = true
		t.Run(tc.file, func(t *testing.T) {
			path := filepath.Join("testdata", "bad", tc.file)
			set, err := LoadFiles([]string{path}, fakeCatalog{})
			if err == nil {
				t.Fatalf("LoadFiles(%s) = %d rules, want an error", path, len(set.Rules))
			}
			if set != nil {
				t.Errorf("LoadFiles returned a set along with an error")
			}
			got := strings.Split(err.Error(), "\n")
			if len(got) != len(tc.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(got), len(tc.want), err)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("error %d:\n got %s\nwant fragment %s", i, got[i], w)
				}
				if !strings.HasPrefix(got[i], "testdata/bad/") {
					t.Errorf("error %d does not start with the file name: %s", i, got[i])
				}
			}
			var le *Error
			if !errors.As(err, &le) || le.File != path || le.Line <= 0 {
				t.Errorf("errors.As(*Error) = %+v, want File %s and a line", le, path)
			}
		})
	}
	files, _ := filepath.Glob("testdata/bad/*.yml")
	for _, f := range files {
		if !seen[filepath.Base(f)] {
			t.Errorf("%s has no test case", f)
		}
	}
}

func TestLoadFilesGood(t *testing.T) {
	paths := []string{"testdata/good.yml", "testdata/billing.yml", "testdata/empty.yml"}
	set, err := LoadFiles(paths, fakeCatalog{})
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	if want := hex.EncodeToString(h.Sum(nil)); set.Hash != want {
		t.Errorf("Hash = %s, want %s", set.Hash, want)
	}
	if !set.UsesFiring {
		t.Errorf("UsesFiring = false; only-on-resolved calls firing()")
	}
	var names []string
	for _, r := range set.Rules {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"restart-crashlooping-pod", "disk-full-shadow", "only-on-resolved", "retrigger-billing"}, names); diff != "" {
		t.Errorf("rule names (-want +got):\n%s", diff)
	}

	r := set.Rule("restart-crashlooping-pod")
	if r == nil {
		t.Fatal(`Rule("restart-crashlooping-pod") = nil`)
	}
	good, _ := os.ReadFile("testdata/good.yml")
	sum := sha256.Sum256(good)
	type summary struct {
		File, FileHash                string
		Mode                          vocab.Mode
		Line                          int
		For, Cooldown                 time.Duration
		Actions, Escalate, OnResolved int
		Handler, Approval             string
		Timeout                       time.Duration
		ActionLine                    int
		Params                        map[string]any
		UsesFiring                    bool
	}
	got := summary{r.File, r.FileHash, r.Mode, r.Line, r.For, r.Cooldown, len(r.Actions), len(r.Escalate), len(r.OnResolved),
		r.Actions[0].Handler, r.Actions[0].Approval, r.Actions[0].Timeout, r.Actions[0].Line, r.Actions[0].Params, r.UsesFiring}
	want := summary{"testdata/good.yml", hex.EncodeToString(sum[:]), vocab.ModeEnforce, 2, time.Minute, 15 * time.Minute, 1, 1, 1,
		"k8s.delete_pod", ApprovalRequired, 30 * time.Second, 8,
		map[string]any{"namespace": "{{ alert.labels.namespace }}", "pod": "{{ alert.labels.pod }}"}, false}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("restart-crashlooping-pod (-want +got):\n%s", diff)
	}

	d := set.Rule("disk-full-shadow")
	if d.Mode != vocab.ModeShadow || d.Cooldown != 24*time.Hour || d.For != 0 {
		t.Errorf("disk-full-shadow: mode %q cooldown %v for %v, want shadow 24h 0", d.Mode, d.Cooldown, d.For)
	}
	if set.Rule("nope") != nil {
		t.Errorf(`Rule("nope") != nil`)
	}
	if !set.Rule("only-on-resolved").UsesFiring {
		t.Errorf("only-on-resolved: UsesFiring = false")
	}
}

func TestLoadFilesDuplicateAcrossFiles(t *testing.T) {
	_, err := LoadFiles([]string{"testdata/dup-a.yml", "testdata/dup-b.yml"}, fakeCatalog{})
	want := `testdata/dup-b.yml:8: duplicate rule name "shared-name" (also at testdata/dup-a.yml:2)`
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestLoadFilesAllErrorsAcrossFiles(t *testing.T) {
	_, err := LoadFiles([]string{"testdata/bad/bad-mode.yml", "testdata/missing.yml", "testdata/bad/no-name.yml"}, fakeCatalog{})
	if err == nil {
		t.Fatal("want errors")
	}
	msg := err.Error()
	for _, w := range []string{"bad-mode.yml:4:", "testdata/missing.yml: no such file", "no-name.yml:2:"} {
		if !strings.Contains(msg, w) {
			t.Errorf("error lacks %q:\n%s", w, msg)
		}
	}
}

func TestUsesFiringFalse(t *testing.T) {
	set, err := LoadFiles([]string{"testdata/billing.yml"}, fakeCatalog{})
	if err != nil {
		t.Fatal(err)
	}
	if set.UsesFiring {
		t.Errorf("UsesFiring = true for rules without firing()")
	}
}

func TestParseTemplateUsesFiring(t *testing.T) {
	rs := mustParse(t, `
rules:
  - name: r
    when: alert.name == "X"
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x", body: "{{ firing('Watchdog') }}"}
`)
	if !rs[0].UsesFiring {
		t.Errorf("UsesFiring = false for firing() in a template")
	}
}

func mustParse(t testing.TB, src string) []*Rule {
	t.Helper()
	rs, err := Parse([]byte(src), "inline.yml", fakeCatalog{})
	if err != nil {
		t.Fatal(err)
	}
	return rs
}

// firingSet is a FiringSet of alert label sets.
type firingSet []map[string]string

func (f firingSet) Firing(name string, labels map[string]string) bool {
	for _, ls := range f {
		if ls["alertname"] != name {
			continue
		}
		ok := true
		for k, v := range labels {
			if ls[k] != v {
				ok = false
			}
		}
		if ok {
			return true
		}
	}
	return false
}

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func crashloop(status alert.Status) alert.Alert {
	a := alert.Alert{
		Source: alert.SourceAlertmanager,
		Status: status,
		Labels: map[string]string{
			"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-7d9f8b6c5-x2x4z",
			"container": "checkout", "severity": "warning", "job": "kube-state-metrics",
		},
		Annotations: map[string]string{"summary": "Pod shop/checkout-7d9f8b6c5-x2x4z is crash looping."},
		StartsAt:    t0.Add(-5 * time.Minute),
	}
	if status == alert.StatusResolved {
		a.EndsAt = t0
	}
	if err := a.Validate(); err != nil {
		panic(err)
	}
	return a
}

func withValue(a alert.Alert, v float64) alert.Alert {
	a.Value = &v
	return a
}

// withLabel returns a copy of a with the label k set to v (the fingerprint is not recomputed).
func withLabel(a alert.Alert, k, v string) alert.Alert {
	a.Labels = maps.Clone(a.Labels)
	a.Labels[k] = v
	return a
}

func TestMatch(t *testing.T) {
	watchdog := firingSet{{"alertname": "Watchdog"}, {"alertname": "TargetDown", "job": "node", "instance": "db1:9100"}}
	tests := []struct {
		name   string
		when   string
		alert  alert.Alert
		now    time.Time
		firing FiringSet
		want   bool
	}{
		{"crashloop firing", `alert.name == "KubePodCrashLooping" && alert.status == "firing"`, crashloop(alert.StatusFiring), t0, nil, true},
		{"crashloop resolved", `alert.name == "KubePodCrashLooping" && alert.status == "firing"`, crashloop(alert.StatusResolved), t0, nil, false},
		{"source", `alert.source == "alertmanager"`, crashloop(alert.StatusFiring), t0, nil, true},
		{"missing label is empty", `alert.labels.team == "payments"`, crashloop(alert.StatusFiring), t0, nil, false},
		{"missing label equals empty", `alert.labels["team"] == ""`, crashloop(alert.StatusFiring), t0, nil, true},
		{"missing label default", `(alert.labels.team ?? "none") == "none"`, crashloop(alert.StatusFiring), t0, nil, true},
		{"present label default", `(alert.labels.namespace ?? "none") == "shop"`, crashloop(alert.StatusFiring), t0, nil, true},
		{"label in", `alert.labels.namespace in ["shop", "billing"]`, crashloop(alert.StatusFiring), t0, nil, true},
		{"has label", `"pod" in alert.labels && !("team" in alert.labels)`, crashloop(alert.StatusFiring), t0, nil, true},
		{"annotation match", `alert.annotations.summary matches "crash looping"`, crashloop(alert.StatusFiring), t0, nil, true},
		{"value NaN compares false", `alert.value > 90 || alert.value <= 90`, crashloop(alert.StatusFiring), t0, nil, false},
		{"value NaN detectable", `alert.value != alert.value`, crashloop(alert.StatusFiring), t0, nil, true},
		{"value present", `alert.value > 90`, withValue(crashloop(alert.StatusFiring), 97.5), t0, nil, true},
		{"activeFor below", `alert.activeFor >= duration("10m")`, crashloop(alert.StatusFiring), t0, nil, false},
		{"activeFor above", `alert.activeFor >= duration("10m")`, crashloop(alert.StatusFiring), t0.Add(6 * time.Minute), nil, true},
		{"now injected", `now() == alert.startsAt + duration("5m")`, crashloop(alert.StatusFiring), t0, nil, true},
		{"now minus startsAt", `now() - alert.startsAt > duration("4m")`, crashloop(alert.StatusFiring), t0, nil, true},
		{"endsAt", `alert.endsAt == now()`, crashloop(alert.StatusResolved), t0, nil, true},
		{"fingerprint", `len(alert.fingerprint) == 16`, crashloop(alert.StatusFiring), t0, nil, true},
		{"not a drill", `alert.drill`, crashloop(alert.StatusFiring), t0, nil, false},
		{"drill", `alert.drill && alert.labels.responder_drill == "api-down-1"`, withLabel(crashloop(alert.StatusFiring), alert.DrillLabel, "api-down-1"), t0, nil, true},
		{"drill excluded", `alert.name == "KubePodCrashLooping" && !alert.drill`, withLabel(crashloop(alert.StatusFiring), alert.DrillLabel, "api-down-1"), t0, nil, false},
		{"empty drill label is no drill", `alert.drill`, withLabel(crashloop(alert.StatusFiring), alert.DrillLabel, ""), t0, nil, false},
		{"firing nil set", `firing("Watchdog")`, crashloop(alert.StatusFiring), t0, nil, false},
		{"firing by name", `firing("Watchdog")`, crashloop(alert.StatusFiring), t0, watchdog, true},
		{"not firing", `firing("NodeDown")`, crashloop(alert.StatusFiring), t0, watchdog, false},
		{"firing with labels", `firing("TargetDown", {"job": "node"})`, crashloop(alert.StatusFiring), t0, watchdog, true},
		{"firing with other labels", `firing("TargetDown", {"job": "api"})`, crashloop(alert.StatusFiring), t0, watchdog, false},
		{"firing with alert labels", `firing("TargetDown", alert.labels)`, crashloop(alert.StatusFiring), t0, watchdog, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := mustParse(t, "rules:\n  - name: r\n    when: '"+tc.when+"'\n    actions:\n      - handler: http.request\n        params: {url: \"http://status.example.com/x\"}\n")
			got, err := rs[0].Match(NewEnv(tc.alert, tc.now, tc.firing))
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("Match(%s) = %v, want %v", tc.when, got, tc.want)
			}
		})
	}
}

func TestMatchRuntimeError(t *testing.T) {
	rs := mustParse(t, `
rules:
  - name: r
    when: 'int(alert.labels.pod) > 1'
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x"}
`)
	_, err := rs[0].Match(NewEnv(crashloop(alert.StatusFiring), t0, nil))
	if err == nil || !strings.Contains(err.Error(), `rule "r": when:`) {
		t.Fatalf("err = %v, want a when error naming the rule", err)
	}
}

func TestMatchDoesNotAllocateMuch(t *testing.T) {
	rs := mustParse(t, `
rules:
  - name: r
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing" && alert.labels.severity in ["warning", "critical"]
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x"}
`)
	env := NewEnv(crashloop(alert.StatusFiring), t0, nil)
	allocs := testing.AllocsPerRun(100, func() {
		if ok, err := rs[0].Match(env); !ok || err != nil {
			t.Fatalf("Match = %v, %v", ok, err)
		}
	})
	// A compile would allocate thousands of times; evaluation boxes a few strings.
	if allocs > 8 {
		t.Errorf("Match allocates %v times per call, want <= 8", allocs)
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"90s", 90 * time.Second, false},
		{"1m30s", 90 * time.Second, false},
		{"1d", 24 * time.Hour, false},
		{"2w", 14 * 24 * time.Hour, false},
		{"1h30m", 90 * time.Minute, false},
		{"0", 0, false},
		{"soon", 0, true},
		{"", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseDuration(tc.in)
			if (err != nil) != tc.err || got != tc.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v, err %v", tc.in, got, err, tc.want, tc.err)
			}
		})
	}
}

func TestParseEdgeFiles(t *testing.T) {
	tests := []struct {
		name, src string
		rules     int
		err       string
	}{
		{"empty", "", 0, ""},
		{"comments only", "# nothing\n", 0, ""},
		{"null rules", "rules:\n", 0, ""},
		{"two documents", "rules: []\n---\nrules: []\n", 0, "inline.yml:2: a rule file holds one YAML document"},
		{"not a mapping", "- a\n- b\n", 0, "inline.yml:1: a rule file must be a mapping with a rules: list"},
		{"rules not a list", "rules: {a: 1}\n", 0, "inline.yml:1: rules must be a list"},
		{"rule not a mapping", "rules: [x]\n", 0, "inline.yml:1: a rule must be a mapping"},
		{"duplicate key", "rules:\n  - name: a\n    name: b\n    when: 'true'\n    on_resolved: [{handler: http.request, params: {url: 'http://status.example.com/'}}]\n", 0,
			`inline.yml:3: rule "a": duplicate key "name"`},
		{"anchors", `
x: &page {handler: http.request, params: {url: "http://status.example.com/{{ alert.labels.pod }}"}}
rules: []
`, 0, `inline.yml:2: rule file: unknown key "x"`},
		{"alias escalate", `
rules:
  - name: a
    when: alert.name == "A"
    escalate: &esc
      - handler: http.request
        params: {url: "http://status.example.com/x", body: "{{ alert.labels.pod }}"}
  - name: b
    when: alert.name == "B"
    escalate: *esc
`, 2, ""},
		{"only escalate", "rules:\n  - name: a\n    when: 'true'\n    escalate: [{handler: http.request, params: {url: 'http://status.example.com/'}}]\n", 1, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse([]byte(tc.src), "inline.yml", fakeCatalog{})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
			if len(rs) != tc.rules {
				t.Errorf("got %d rules, want %d", len(rs), tc.rules)
			}
		})
	}
}

func TestParseAliasBomb(t *testing.T) {
	src := `
a: &a ["x","x","x","x","x","x","x","x","x","x"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
`
	src = strings.ReplaceAll(src, "\n", "\n  ")
	src = "x:" + src + "\nrules:\n  - name: bomb\n    when: 'true'\n    actions:\n      - handler: http.request\n        params: {url: 'http://status.example.com/', headers: *f}\n"
	start := time.Now()
	_, err := Parse([]byte(src), "bomb.yml", fakeCatalog{})
	if err == nil || !strings.Contains(err.Error(), "params expand to more than") {
		t.Fatalf("err = %v, want the node budget error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Parse took %v", d)
	}
}

func TestApprovalsRequired(t *testing.T) {
	rs := mustParse(t, `
rules:
  - name: two-person
    when: alert.name == "X"
    actions:
      - handler: http.request
        approval: required
        approvals_required: 2
        params: {url: "http://airflow.internal:8080/x"}
`)
	if got := rs[0].Actions[0].ApprovalsRequired; got != 2 {
		t.Fatalf("ApprovalsRequired = %d, want 2", got)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"zero", "approval: required\n        approvals_required: 0", "inline.yml:8: rule \"bad\": actions: http.request: approvals_required must be an integer from 1 to 5"},
		{"with approval none", "approval: none\n        approvals_required: 2", "approvals_required needs approval: required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(`
rules:
  - name: bad
    when: alert.name == "X"
    actions:
      - handler: http.request
        `+tc.yaml+`
        params: {url: "http://airflow.internal:8080/x"}
`), "inline.yml", fakeCatalog{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
}

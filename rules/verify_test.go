package rules

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
)

func verifyRule(verify string) string {
	return `
rules:
  - name: fix
    when: alert.name == "X"
    verify: ` + verify + `
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x"}
`
}

func TestParseVerify(t *testing.T) {
	tests := []struct {
		name, verify string
		within       time.Duration
		when         string
		probe        bool // UsesProbe (and UsesFiring)
		condition    string
	}{
		{"default condition", `{within: 5m}`, 5 * time.Minute, "", false, "the incident resolved"},
		{"prometheus duration", `{within: 1d}`, 24 * time.Hour, "", false, "the incident resolved"},
		{"expression", `{within: 90s, when: 'alert.value < 10'}`, 90 * time.Second, "alert.value < 10", false, "alert.value < 10"},
		{"probe", `{within: 5m, when: '  probe("api-health").success  '}`, 5 * time.Minute, `probe("api-health").success`, true, `probe("api-health").success`},
		{"block mapping", "\n      within: 2m\n      when: probe(\"db\").value < 5", 2 * time.Minute, `probe("db").value < 5`, true, `probe("db").value < 5`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := Parse([]byte(verifyRule(tc.verify)), "v.yml", fakeCatalog{})
			if err != nil {
				t.Fatal(err)
			}
			v := rs[0].Verify
			if v == nil {
				t.Fatal("Verify = nil")
			}
			if v.Within != tc.within || v.When != tc.when || v.HasWhen() != (tc.when != "") || v.Condition() != tc.condition {
				t.Errorf("Verify = {%s %q HasWhen=%v %q}, want {%s %q %q}", v.Within, v.When, v.HasWhen(), v.Condition(), tc.within, tc.when, tc.condition)
			}
			if want := 5 + strings.Count(tc.verify[:1], "\n"); v.Line != want { // a block mapping starts on the next line
				t.Errorf("Line = %d, want %d", v.Line, want)
			}
			if rs[0].UsesProbe != tc.probe || (tc.probe && !rs[0].UsesFiring) {
				t.Errorf("UsesProbe = %v, UsesFiring = %v; want probe %v", rs[0].UsesProbe, rs[0].UsesFiring, tc.probe)
			}
		})
	}
	rs, err := Parse([]byte(strings.Replace(verifyRule("{within: 5m}"), "    verify: {within: 5m}\n", "", 1)), "v.yml", fakeCatalog{})
	if err != nil || rs[0].Verify != nil {
		t.Fatalf("a rule without verify: Verify = %+v, err %v", rs[0].Verify, err)
	}
}

// probes is a firing snapshot that knows the probes' firing alerts.
type probes map[string]ProbeResult

func (probes) Firing(string, map[string]string) bool { return false }
func (p probes) Probe(name string) (ProbeResult, bool) {
	r, ok := p[name]
	return r, ok
}

func TestVerifyHoldsWithProbe(t *testing.T) {
	firing := probes{"api-health": {Success: false, Value: 3.2}, "db": {Success: false, Value: math.NaN()}}
	tests := []struct {
		when   string
		firing FiringSet
		want   bool
	}{
		{`probe("api-health").success`, firing, false},
		{`!probe("api-health").success && probe("api-health").value > 3`, firing, true},
		{`probe("db").success || probe("db").value > 0`, firing, false},               // firing without a value: NaN compares false
		{`probe("cache").success`, firing, true},                                      // not firing: healthy (or unknown)
		{`probe("cache").value > 0 || probe("cache").value <= 0`, firing, false},      // and its value is NaN
		{`probe("api-health").success`, nil, true},                                    // no snapshot of the probes
		{`probe("api-health").success`, firingSet{{"alertname": "api-health"}}, true}, // a FiringSet without probes
		{`alert.status == "resolved" && probe("api-health").success`, probes{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.when, func(t *testing.T) {
			rs, err := Parse([]byte(verifyRule(`{within: 5m, when: '`+tc.when+`'}`)), "v.yml", fakeCatalog{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := rs[0].Verify.Holds(NewEnv(crashloop(alert.StatusFiring), t0, tc.firing))
			if err != nil || got != tc.want {
				t.Errorf("Holds = %v, %v; want %v", got, err, tc.want)
			}
		})
	}
	var none *Verify
	if ok, err := none.Holds(NewEnv(crashloop(alert.StatusFiring), t0, nil)); ok || err != nil {
		t.Errorf("a nil Verify holds: %v %v", ok, err)
	}
}

// probeCatalog is fakeCatalog knowing the configured probes.
type probeCatalog struct {
	fakeCatalog
	names []string
}

func (c probeCatalog) ProbeNames() []string { return c.names }

func TestProbeNamesCheckedAgainstTheConfig(t *testing.T) {
	src := `
rules:
  - name: gated
    when: alert.name == "X" && !probe("api-helth").success
    verify: {within: 5m, when: 'probe("db").success'}
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x", body: '{{ probe("cache").value }}'}
`
	tests := []struct {
		name string
		cat  Catalog
		want []string
	}{
		{"no probes configured: not checked", probeCatalog{}, nil},
		{"a catalog without probes: not checked", fakeCatalog{}, nil},
		{"all known", probeCatalog{names: []string{"api-helth", "cache", "db"}}, nil},
		{"unknown names", probeCatalog{names: []string{"api-health", "db"}}, []string{
			`p.yml:4: rule "gated": when: unknown probe "api-helth" (probes: api-health, db)`,
			`p.yml:8: rule "gated": actions: http.request: param body: unknown probe "cache" (probes: api-health, db)`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(src), "p.yml", tc.cat)
			var got []string
			if err != nil {
				got = strings.Split(err.Error(), "\n")
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

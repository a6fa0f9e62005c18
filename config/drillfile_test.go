package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/vocab"
)

func TestLoadDrills(t *testing.T) {
	ds, err := LoadDrills(filepath.Join("testdata", "drills.good.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Drill{{
		Name: "api-down",
		RTO:  Duration(5 * time.Minute),
		Inject: DrillInject{Alerts: []DrillAlert{{
			Labels:      map[string]string{"alertname": "TargetDown", "job": "payments-api", "namespace": "shop"},
			Annotations: map[string]string{"summary": "drill"},
		}}},
		Approve: DrillApproveAuto,
		Expect: []DrillExpect{
			{Rule: "target-down-hook", Handler: "http.request", State: vocab.StateSucceeded},
			{Rule: "target-down-hook", Handler: "page.slack", State: vocab.StateDryRun},
		},
		Resolve: true,
	}, {
		Name:     "pg.failover_1",
		Schedule: "0 3 * * 1",
		RTO:      Duration(2 * time.Minute),
		Timeout:  Duration(10 * time.Minute),
		Inject: DrillInject{
			Exec:   []string{"pg_ctl", "-D", "/srv/standby-test", "stop", "-m", "immediate"},
			Probes: []string{"pg-primary"},
		},
		Approve: DrillApproveWait,
		Page:    DrillPageReal,
		Expect:  []DrillExpect{{Rule: "pg-failover", Handler: "postgres.promote", State: vocab.StateSucceeded}},
	}}
	if diff := cmp.Diff(want, ds); diff != "" {
		t.Errorf("drills (-want +got):\n%s", diff)
	}
}

func TestLoadDrillsErrors(t *testing.T) {
	for _, tc := range []struct {
		file string
		want []string
	}{
		{"drills.bad.yml", []string{
			`drills.bad.yml:2: drills[0].name: "Bad_Name": want lower-case`,
			`drills.bad.yml:3: drills[0].rto: must be positive, got 0s`,
			`drills.bad.yml:10: drills[0].schedule: "every tuesday": `,
			`drills.bad.yml:7: drills[0].inject.exec: set inject.alerts or inject.exec, not both`,
			`drills.bad.yml:5: drills[0].inject.probes: an exec fault needs the probes that must detect it`,
			`drills.bad.yml:6: drills[0].inject.alerts[0].labels: needs an alertname label`,
			`drills.bad.yml:6: drills[0].inject.alerts[0].labels.responder_drill: label "responder_drill" is set by the drill`,
			`drills.bad.yml:8: drills[0].approve: "sometimes": want auto or wait`,
			`drills.bad.yml:9: drills[0].page: "fake": want real`,
			`drills.bad.yml:12: drills[0].expect[0].rule: missing`,
			`drills.bad.yml:12: drills[0].expect[0].state: "done" is not an action state`,
			`drills.bad.yml:15: drills[1].inject.exec[0]: empty command`,
			`drills.bad.yml:16: drills[1].resolve: resolve needs inject.alerts`,
			`drills.bad.yml:17: drills[1].expect: a drill needs at least one expectation`,
			`drills.bad.yml:18: drills[2].name: drill "dup" is already defined by drills[1]`,
			`drills.bad.yml:20: drills[2].inject: a drill injects alerts or runs exec; set one`,
			`drills.bad.yml:22: drills[2].expect[0].handler: missing`,
		}},
		{"drills.bad-unknown.yml", []string{`drills.bad-unknown.yml:8: unknown key "stat"`}},
		{"drills.bad-empty.yml", []string{`drills.bad-empty.yml:1: drills: the file holds no drills`}},
		{"conf.bad-syntax.yml", []string{`conf.bad-syntax.yml:`}},
		{"drills.missing.yml", []string{`load drills: open testdata/drills.missing.yml`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := LoadDrills(filepath.Join("testdata", tc.file))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks\n  %s\nin\n%v", w, err)
				}
			}
		})
	}
}

func TestConfigDrills(t *testing.T) {
	cfg := mustLoad(t, "conf.drills.yml")
	d := cfg.Drills
	if d.Page != "#drills" || d.Budget.Max != 3 || d.Budget.Window.D() != 30*time.Minute || len(d.Scenarios) != 1 {
		t.Fatalf("drills = %+v", d)
	}
	if got := d.Scenarios[0].Expect[0].State; got != vocab.StateSucceeded {
		t.Errorf("expect state default = %q, want succeeded", got)
	}
	empty := mustLoad(t, "conf.empty.yml")
	if b := empty.Drills.Budget; b.Max != DefaultDrillBudgetMax || b.Window.D() != time.Hour {
		t.Errorf("default budget = %+v, want max 10 window 1h", b)
	}

	for _, tc := range []struct {
		file string
		want []string
	}{
		{"conf.drills-bad.yml", []string{
			`conf.drills-bad.yml:6: drills[0].inject.probes[0]: probe "pg-primary" is not configured`,
			`conf.drills-bad.yml:9: drills[1].name: drill "pg-failover" is already defined by drills[0]`,
			`conf.drills-bad.yml:10: drills[1].rto: must be positive`,
			`conf.drills-bad.yml:15: drills[1].expect[0].state: "runnin" is not an action state`,
		}},
		{"conf.drills-bad-budget.yml", []string{`conf.drills-bad-budget.yml:2: drills.budget.max: must not be negative, got -1`}},
		{"conf.drills-bad-budget-name.yml", []string{`conf.drills-bad-budget-name.yml:2: safety.budgets[0].name: budget name "drills" is the drills' own budget (drills.budget)`}},
		{"conf.drills-bad-window.yml", []string{`conf.drills-bad-window.yml:2: drills.budget.window: must be positive, got 0s`}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			_, err := load(t, tc.file)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks\n  %s\nin\n%v", w, err)
				}
			}
		})
	}
}

// FuzzLoadDrills: drill files never panic, errors name the file, and what is accepted is valid:
// named, one kind of fault, expectations with rule, handler and a known state.
func FuzzLoadDrills(f *testing.F) {
	for _, name := range []string{"drills.good.yml", "drills.bad.yml", "drills.bad-unknown.yml", "drills.bad-empty.yml"} {
		b, err := readTestdata(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("drills:\n  - {name: a, rto: 1s, inject: {alerts: [{labels: {alertname: A}}]}, expect: [{rule: r, handler: h}]}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ds, err := ParseDrills(data, "fuzz.yml")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.yml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(ds) == 0 {
			t.Fatal("accepted a file without drills")
		}
		for _, d := range ds {
			if !drillName.MatchString(d.Name) || d.RTO <= 0 || (len(d.Inject.Alerts) > 0) == (len(d.Inject.Exec) > 0) || len(d.Expect) == 0 {
				t.Fatalf("accepted an invalid drill %+v", d)
			}
			for _, e := range d.Expect {
				if e.Rule == "" || e.Handler == "" || e.State == "" {
					t.Fatalf("accepted an invalid expectation %+v", e)
				}
			}
		}
	})
}

func readTestdata(name string) ([]byte, error) { return os.ReadFile(filepath.Join("testdata", name)) }

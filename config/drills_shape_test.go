package config

import (
	"strings"
	"testing"
	"time"
)

const shapeScenario = "name: a\n    rto: 5m\n    inject: {alerts: [{labels: {alertname: A}}]}\n    expect: [{rule: r, handler: h}]\n"

func TestDrillsSectionShapes(t *testing.T) {
	list, err := Parse([]byte("drills:\n  - "+shapeScenario), "list.yml", noEnv)
	if err != nil || len(list.Drills.Scenarios) != 1 || list.Drills.Scenarios[0].Name != "a" {
		t.Fatalf("list form: %+v, %v", list.Drills, err)
	}
	if b := list.Drills.Budget; b.Max != DefaultDrillBudgetMax || b.Window.D() != time.Hour {
		t.Errorf("list form lost the default budget: %+v", b)
	}
	m, err := Parse([]byte("drills:\n  page: '#drills'\n  scenarios:\n    - name: b\n      rto: 1m\n      inject: {alerts: [{labels: {alertname: A}}]}\n      expect: [{rule: r, handler: h}]\n"), "map.yml", noEnv)
	if err != nil || m.Drills.Page != "#drills" || len(m.Drills.Scenarios) != 1 {
		t.Fatalf("mapping form: %+v, %v", m.Drills, err)
	}
	for _, bad := range []string{"drills:\n  - name: a\n    bogus: 1\n", "drills:\n  pages: x\n"} {
		if _, err := Parse([]byte(bad), "bad.yml", noEnv); err == nil || !strings.Contains(err.Error(), "bad.yml:") {
			t.Errorf("%q: want a file:line error, got %v", bad, err)
		}
	}
}

package config

import (
	"strings"
	"testing"
)

func TestDrillsSectionShapes(t *testing.T) {
	list, err := Parse([]byte("drills:\n  - name: a\n    rto: 5m\n"), "list.yml")
	if err != nil || len(list.Drills.Scenarios) != 1 || list.Drills.Scenarios[0].Name != "a" {
		t.Fatalf("list form: %+v, %v", list.Drills, err)
	}
	m, err := Parse([]byte("drills:\n  page: '#drills'\n  scenarios:\n    - name: b\n      rto: 1m\n"), "map.yml")
	if err != nil || m.Drills.Page != "#drills" || len(m.Drills.Scenarios) != 1 {
		t.Fatalf("mapping form: %+v, %v", m.Drills, err)
	}
	for _, bad := range []string{"drills:\n  - name: a\n    bogus: 1\n", "drills:\n  pages: x\n"} {
		if _, err := Parse([]byte(bad), "bad.yml"); err == nil || !strings.Contains(err.Error(), "bad.yml:") {
			t.Errorf("%q: want a file:line error, got %v", bad, err)
		}
	}
}

package app

import (
	"testing"
	"time"

	"github.com/responder-sre/responder/config"
	"github.com/responder-sre/responder/engine"
)

// TestEngineDrillSettings: the engine's drill options come from drills.page and drills.budget
// (unset: 10 per 1h), at start and on reload alike (engineSettings serves both).
func TestEngineDrillSettings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		drills config.DrillsConfig
		want   engine.Budget
	}{
		{"unset", config.DrillsConfig{}, engine.Budget{Name: "drills", Match: "*", Per: "global", Max: 10, Window: time.Hour}},
		{"set", config.DrillsConfig{Page: "#drills", Budget: config.DrillBudget{Max: 3, Window: config.Duration(10 * time.Minute)}},
			engine.Budget{Name: "drills", Match: "*", Per: "global", Max: 3, Window: 10 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.Drills = tc.drills
			s := (&App{}).engineSettings(cfg, nil, nil)
			if s.DrillBudget != tc.want || s.DrillPage != tc.drills.Page {
				t.Fatalf("drill budget %+v page %q, want %+v and %q", s.DrillBudget, s.DrillPage, tc.want, tc.drills.Page)
			}
		})
	}
}

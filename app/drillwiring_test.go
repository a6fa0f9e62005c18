package app

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/responder-sre/responder/config"
)

// listerFunc is a drillProbeLister answering from a func.
type listerFunc func(ctx context.Context, now time.Time, maxAge time.Duration) (map[string]string, error)

func (f listerFunc) ActiveDrillProbes(ctx context.Context, now time.Time, maxAge time.Duration) (map[string]string, error) {
	return f(ctx, now, maxAge)
}

// TestDrillsOfProbes: the probes' Drills reads nothing until a.drillProbes is set, then reads
// the store's running drills as of the App's clock, over drillProbeMaxAge.
func TestDrillsOfProbes(t *testing.T) {
	at := time.Date(2026, 11, 22, 3, 0, 0, 0, time.UTC)
	a := &App{o: Options{Now: func() time.Time { return at }, Logger: slog.New(slog.DiscardHandler)}}
	d := a.drillsOfProbes()
	if got := d.RunID(context.Background(), "db-primary"); got != "" {
		t.Fatalf("RunID without drillProbes = %q, want none", got)
	}
	var gotNow time.Time
	var gotAge time.Duration
	a.drillProbes = a.drillProbesOf(listerFunc(func(_ context.Context, now time.Time, maxAge time.Duration) (map[string]string, error) {
		gotNow, gotAge = now, maxAge
		return map[string]string{"db-primary": "db-failover-20261122T030000Z-00ab"}, nil
	}))
	at = at.Add(time.Minute) // the next round
	if got := d.RunID(context.Background(), "db-primary"); got != "db-failover-20261122T030000Z-00ab" {
		t.Errorf("RunID = %q, want the drill's run id", got)
	}
	if !gotNow.Equal(at) || gotAge != drillProbeMaxAge {
		t.Errorf("read the drills at %s over %s, want %s over %s", gotNow, gotAge, at, drillProbeMaxAge)
	}
}

// TestSlackDrillChannelOf: Slack posts drill incidents to drills.page when it is a Slack channel.
func TestSlackDrillChannelOf(t *testing.T) {
	for page, want := range map[string]string{"": "", "#drills": "#drills", "C0DRILLS01": "C0DRILLS01", "drills": ""} {
		cfg := config.Default()
		cfg.Drills.Page = page
		if got := slackDrillChannel(cfg); got != want {
			t.Errorf("drills.page %q: Slack drill channel %q, want %q", page, got, want)
		}
	}
}

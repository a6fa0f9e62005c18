package engine_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/alert"
)

const refreshRules = `
rules:
  - name: wait-a
    when: alert.name == "Disk" && alert.value < 10
    for: 5m
    actions: [{handler: test.fix, params: {target: "{{ alert.labels.host }}"}}]
  - name: matched-for
    when: alert.name == "Disk"
    for: 5m
    actions: [{handler: test.fix, params: {target: "{{ alert.labels.host }}"}}]
  - name: now-rule
    when: alert.name == "Disk" && alert.value < 10
    actions: [{handler: test.page, params: {target: "{{ alert.labels.host }}"}}]
  - name: err-for
    when: alert.name == "Disk" && int(alert.annotations.n) > 3
    for: 5m
    actions: [{handler: test.fix, params: {target: "{{ alert.labels.host }}"}}]
`

// A firing alert refreshes the open incidents of exactly the `for` rules it no longer matches: not
// those it matches (they are upserted), not those that fail on it, not those of rules without a
// `for`, not those of another episode. One refresh key per alert carries it (see match.go).
func TestRefreshUnmatchedForRules(t *testing.T) {
	h := newHarness(t, refreshRules, nil)
	disk := func(host string, v float64, n string) alert.Alert {
		a := withValue(mkAlert("Disk", alert.StatusFiring, t0, map[string]string{"host": host}), v)
		a.Annotations = map[string]string{"n": n}
		return a
	}
	h.process(disk("h1", 5, "7"), disk("h2", 5, "7"), disk("h3", 5, "7"))
	if got := h.incidentStates(); len(got) != 12 {
		t.Fatalf("incidents = %v, want 4 per host", got)
	}
	h.clock.Add(time.Minute)
	// h1 no longer matches wait-a nor now-rule and fails err-for; h2 matches all but err-for. h3
	// is not sent.
	h.process(disk("h1", 50, "x"), disk("h2", 5, "1"))
	rows, err := h.st.Pool().Query(context.Background(),
		`SELECT rule, alert->'labels'->>'host', alert->'annotations'->>'n', last_seen_at FROM incidents ORDER BY 2, 1`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (string, error) {
		var rule, host, n string
		var seen time.Time
		err := r.Scan(&rule, &host, &n, &seen)
		return fmt.Sprintf("%s %s n=%s +%s", host, rule, n, seen.Sub(t0)), err
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"h1 err-for n=7 +0s",       // failed: kept
		"h1 matched-for n=x +1m0s", // matched: upserted
		"h1 now-rule n=7 +0s",      // no `for`: kept
		"h1 wait-a n=x +1m0s",      // no longer matches: refreshed
		"h2 err-for n=1 +1m0s",     // no longer matches: refreshed
		"h2 matched-for n=1 +1m0s", // matched
		"h2 now-rule n=1 +1m0s",    // matched
		"h2 wait-a n=1 +1m0s",      // matched
		"h3 err-for n=7 +0s",       // another episode: kept
		"h3 matched-for n=7 +0s",   //
		"h3 now-rule n=7 +0s",      //
		"h3 wait-a n=7 +0s",        //
	}
	if !slices.Equal(got, want) {
		t.Errorf("incidents:\n%q\nwant:\n%q", got, want)
	}
}

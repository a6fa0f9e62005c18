package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// indexRules mix rules the index files under alert.name or a label (some behind a conjunct that
// may fail, so they are residual), `for` rules, rules that fail on some alerts and rules that
// read firing().
const indexRules = `
rules:
  - name: crash
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions: [{handler: test.fix, params: {target: "{{ alert.labels.pod }}"}}]
  - name: disk-for
    when: 'alert.name in ["DiskFull", "DiskLow"] && !firing("Maintenance", {"host": alert.labels.host})'
    for: 5m
    actions: [{handler: test.fix, params: {target: "{{ alert.labels.host }}"}}]
  - name: api-for
    when: alert.labels.service == "api" && int(alert.labels.n) > 3
    for: 2m
    actions: [{handler: test.page, params: {target: "api"}}]
  - name: failing-first
    when: int(alert.labels.n) > 5 && alert.name == "DiskFull"
    actions: [{handler: test.page, params: {target: "n"}}]
  - name: any-for
    when: alert.labels.pod != "" && alert.value > 3
    for: 1m
    actions: [{handler: test.page, params: {target: "{{ alert.labels.pod }}"}}]
  - name: web-or-db
    when: alert.labels.service in ["web", "db"] || alert.labels.service == "queue"
    actions: [{handler: test.page, params: {target: "{{ alert.labels.service }}"}}]
  - name: split
    when: '"x" == alert.name && split(alert.labels.pod, "-")[1] == "1"'
    for: 3m
    actions: [{handler: test.page, params: {target: "x"}}]
  - name: resolved-only
    when: alert.status == "resolved"
    actions: [{handler: test.page, params: {target: "never"}}]
  - name: missing-label
    when: alert.labels.team == "" && alert.name == "Broken"
    for: 1m
    actions: [{handler: test.page, params: {target: "{{ alert.labels.n }}"}}]
  - name: broken
    when: alert.name == "Broken" && int(alert.labels.n) > 3
    actions: [{handler: test.page, params: {target: "{{ alert.labels.n }}"}}]
`

// linearEvaluate is what evaluate did before the index: every rule on every alert, one refresh
// per (alert, `for` rule it does not match). It is kept here as the reference the index must
// equal; the refreshes are returned per alert as the rules the plan's key must leave out.
func (pl *plan) linearEvaluate(a alert.Alert) {
	probe := a
	if a.Status == alert.StatusResolved {
		pl.resolves = append(pl.resolves, store.ResolveKey{Fingerprint: a.Fingerprint, StartsAt: a.StartsAt, Alert: a})
		probe.Status = alert.StatusFiring
	}
	env := rules.NewEnv(probe, pl.now, pl.firing)
	var refresh []string
	for _, r := range pl.set.Rules {
		ok, err := r.Match(env)
		if err != nil {
			pl.failures = append(pl.failures, ruleFailure{rule: r.Name, alert: a, err: err})
			continue
		}
		if !ok {
			if r.For > 0 && a.Status == alert.StatusFiring {
				refresh = append(refresh, r.Name)
			}
			continue
		}
		u := store.IncidentUpsert{Rule: r.Name, RuleHash: r.FileHash, Alert: a, At: pl.now}
		switch {
		case a.Status == alert.StatusResolved:
			u.State = vocab.IncidentResolved
		case r.For > 0 && pl.now.Before(a.StartsAt.Add(r.For)):
			pl.matches[r.Name]++
			u.State = vocab.IncidentPending
		default:
			pl.matches[r.Name]++
			u.State = vocab.IncidentFiring
		}
		pl.add(u)
	}
	if len(refresh) > 0 {
		var except []string
		for _, r := range pl.set.ForRules() {
			if !slices.Contains(refresh, r) {
				except = append(except, r)
			}
		}
		pl.refresh = append(pl.refresh, store.RefreshKey{Alert: a, Except: except})
	}
}

// linearMatch is match with linearEvaluate.
func (m matcher) linearMatch(set *rules.Set, batch []alert.Alert, firing rules.FiringSet, now time.Time) *plan {
	pl := &plan{now: now, set: set, firing: firing, alerts: latestPerID(batch), recordFiring: set.UsesFiring,
		index: map[upsertKey]int{}, matches: map[string]int{}}
	for _, a := range pl.alerts {
		pl.linearEvaluate(a)
	}
	pl.sort()
	m.open(pl)
	return pl
}

// The plan made with the index equals the plan of the linear scan, over random batches: the same
// upserts and drafts, the same refreshed incidents, matches and failures (in the same order).
func TestMatchIndexEqualsLinearScan(t *testing.T) {
	m, reg := testMatcher(t, 64<<10)
	set := testRules(t, reg, indexRules)
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 15))
	names := []string{"KubePodCrashLooping", "DiskFull", "DiskLow", "x", "Broken", "Other"}
	refreshed, failures, upserts := 0, 0, 0
	for range 2000 {
		var batch []alert.Alert
		for range 1 + r.IntN(6) {
			labels := map[string]string{}
			for k, vs := range map[string][]string{"pod": {"web-1", "web-2", "db"}, "host": {"h1", "h2"},
				"service": {"api", "web", "queue", "other"}, "n": {"1", "4", "9", "x"}, "team": {"", "sre"}} {
				if r.IntN(3) > 0 {
					labels[k] = vs[r.IntN(len(vs))]
				}
			}
			status := alert.StatusFiring
			if r.IntN(4) == 0 {
				status = alert.StatusResolved
			}
			a := testAlert(names[r.IntN(len(names))], status, matchNow.Add(-time.Duration(r.IntN(600))*time.Second), labels)
			if r.IntN(2) == 0 {
				v := float64(r.IntN(8))
				a.Value = &v
			}
			batch = append(batch, a)
		}
		var firing rules.FiringSet = noneFiring{}
		if r.IntN(2) == 0 {
			firing = firingSnapshot{"Maintenance": {{"host": "h1"}}}
		}
		got, want := m.match(set, batch, firing, matchNow), m.linearMatch(set, batch, firing, matchNow)
		if g, w := got.lines(), want.lines(); !slices.Equal(g, w) {
			t.Fatalf("batch %v:\nindexed:\n%s\nlinear:\n%s", batch, strings.Join(g, "\n"), strings.Join(w, "\n"))
		}
		if got.empty() != want.empty() {
			t.Fatalf("empty() = %v, linear %v", got.empty(), want.empty())
		}
		for i, f := range got.failures {
			if w := want.failures[i]; f.err.Error() != w.err.Error() || f.alert.ID() != w.alert.ID() {
				t.Fatalf("failure %d: %v, linear %v", i, f.err, w.err)
			}
		}
		refreshed += len(got.refreshed())
		failures += len(got.failures)
		upserts += len(got.upserts)
	}
	t.Logf("%d refreshed incidents, %d failures, %d upserts", refreshed, failures, upserts)
	if refreshed == 0 || failures == 0 || upserts == 0 {
		t.Errorf("the batches did not exercise every part of the plan")
	}
}

// One refresh key per firing alert, whatever the number of `for` rules: it names what the
// per-rule keys named.
func TestMatchOneRefreshKeyPerAlert(t *testing.T) {
	m, reg := testMatcher(t, 64<<10)
	var b strings.Builder
	b.WriteString("rules:\n")
	for i := range 50 {
		fmt.Fprintf(&b, "  - name: r%02d\n    when: alert.name == \"A%d\"\n    for: 1m\n    actions: [{handler: test.page, params: {target: x}}]\n", i, i)
	}
	set := testRules(t, reg, b.String())
	batch := []alert.Alert{
		testAlert("A7", alert.StatusFiring, matchNow, map[string]string{"pod": "1"}),
		testAlert("B", alert.StatusFiring, matchNow, map[string]string{"pod": "2"}),
		testAlert("A8", alert.StatusResolved, matchNow, map[string]string{"pod": "3"}),
	}
	pl := m.match(set, batch, noneFiring{}, matchNow)
	if len(pl.refresh) != 2 {
		t.Fatalf("%d refresh keys, want one per firing alert", len(pl.refresh))
	}
	for _, k := range pl.refresh {
		want := []string(nil)
		if k.Alert.Name == "A7" {
			want = []string{"r07"}
		}
		if !slices.Equal(k.Except, want) {
			t.Errorf("%s: except %v, want %v", k.Alert.Name, k.Except, want)
		}
	}
	if n := len(pl.refreshed()); n != 49+50 {
		t.Errorf("%d refreshed incidents, want 99", n)
	}
}

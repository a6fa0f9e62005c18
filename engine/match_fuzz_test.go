package engine

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
	"github.com/responder-sre/responder/rules"
	"github.com/responder-sre/responder/store"
	"github.com/responder-sre/responder/vocab"
)

// fuzzRules are matchRules and rules whose templates carry the alert's bytes into params.
const fuzzRules = matchRules + `
  - name: echo
    when: alert.status == "firing" && alert.labels.pod != ""
    for: 1m
    actions:
      - handler: test.page
        params: {target: "{{ alert.labels.pod }}", note: "{{ toJSON(alert.annotations) }}"}
      - handler: test.fix
        params: {target: "{{ alert.annotations.target }}"}
    escalate:
      - handler: test.page
        params: {target: "{{ alert.labels.alertname }}"}
`

// FuzzMatch runs match over alerts built from arbitrary label, annotation and status bytes: it
// never panics, gives the same plan twice, leaves the batch alone, and keeps the plan's
// invariants (see checkPlan).
func FuzzMatch(f *testing.F) {
	f.Add("web-1", "crashing", "db-1", uint8(0), uint16(30), uint8(1))
	f.Add("", "", "", uint8(0xff), uint16(0), uint8(3))
	f.Add("web-1", "x", "db-1", uint8(0x15), uint16(600), uint8(2))
	f.Add(strings.Repeat("p", 200), `{"a":"b"}`, "\x00", uint8(0x42), uint16(90), uint8(4))
	f.Add("web-2", "summary", "7", uint8(0x8c), uint16(400), uint8(3))
	m, reg := testMatcher(f, 512)
	set := testRules(f, reg, fuzzRules)
	f.Fuzz(func(t *testing.T, pod, annot, host string, bits uint8, ago uint16, n uint8) {
		batch := fuzzBatch(pod, annot, host, bits, ago, n)
		var firing rules.FiringSet = noneFiring{}
		if bits&0x40 != 0 {
			firing = firingSnapshot{"Maintenance": {{"host": host}}}
		}
		before := fmt.Sprint(batch)
		pl := m.match(set, batch, firing, matchNow)
		if after := fmt.Sprint(batch); after != before {
			t.Fatalf("match changed its batch:\n%s\n%s", before, after)
		}
		again := m.match(set, batch, firing, matchNow)
		if a, b := pl.lines(), again.lines(); !slices.Equal(a, b) {
			t.Fatalf("two matches differ:\n%s\n--\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
		}
		checkPlan(t, set, batch, pl)
	})
}

// fuzzBatch builds up to four alerts from the fuzzer's bytes: names, statuses and labels vary per
// alert with bits, and invalid ones (a status neither firing nor resolved) are kept: match must
// not panic on them either.
func fuzzBatch(pod, annot, host string, bits uint8, ago uint16, n uint8) []alert.Alert {
	names := []string{"KubePodCrashLooping", "DiskFull", "Broken", "Maintenance"}
	var batch []alert.Alert
	for i := range int(n%4) + 1 {
		status := alert.StatusFiring
		switch (bits >> i) & 0x3 {
		case 1:
			status = alert.StatusResolved
		case 3:
			if bits&0x80 != 0 {
				status = alert.Status(annot)
			}
		}
		labels := map[string]string{alert.NameLabel: names[(int(bits)+i)%len(names)], "pod": pod, "host": host, "n": host}
		if i%2 == 1 {
			labels["pod"] = pod + fmt.Sprint(i)
		}
		a := alert.Alert{Source: alert.SourceAlertmanager, Status: status, Labels: labels,
			Annotations: map[string]string{"summary": annot, "target": annot},
			StartsAt:    matchNow.Add(-time.Duration(ago) * time.Second), ReceivedAt: matchNow.Add(time.Duration(i) * time.Millisecond)}
		if bits&0x20 != 0 && i == 0 {
			a.Annotations = nil
		}
		if err := a.Validate(); err != nil {
			a.Name, a.Fingerprint = labels[alert.NameLabel], alert.Fingerprint(labels)
		}
		batch = append(batch, a)
	}
	return batch
}

// checkPlan checks what every plan keeps: upserts are unique and in key order, a resolved alert
// never opens an incident, every drafted action belongs to a firing incident of its rule, steps
// after a failed one are cancelled and only a failure drafts the escalation.
func checkPlan(t *testing.T, set *rules.Set, batch []alert.Alert, pl *plan) {
	t.Helper()
	if len(pl.index) != len(pl.upserts) || len(pl.opens) != len(pl.upserts) {
		t.Fatalf("%d keys and %d openings for %d upserts", len(pl.index), len(pl.opens), len(pl.upserts))
	}
	for i, o := range pl.opens {
		if pl.index[keyOf(o.Rule, o.Alert.Fingerprint, o.Alert.StartsAt)] != i {
			t.Fatalf("upsert %d (%s) is not indexed", i, o.Rule)
		}
		if i > 0 && compareKeys(*pl.opens[i-1].IncidentUpsert, *o.IncidentUpsert) >= 0 {
			t.Fatalf("upserts %d and %d are out of order", i-1, i)
		}
		if o.IncidentUpsert != &pl.upserts[i] {
			t.Fatalf("opening %d is not upsert %d's", i, i)
		}
		if o.rule == nil || o.rule != set.Rule(o.Rule) {
			t.Fatalf("upsert %d names rule %q but carries %v", i, o.Rule, o.rule)
		}
		if (o.Alert.Status == alert.StatusResolved) != (o.State == vocab.IncidentResolved) {
			t.Fatalf("upsert %d: a %s alert upserts a %s incident", i, o.Alert.Status, o.State)
		}
		checkOpening(t, o)
	}
	resolved := 0
	for _, a := range latestPerID(batch) {
		if a.Status == alert.StatusResolved {
			resolved++
		}
	}
	if len(pl.resolves) != resolved {
		t.Fatalf("%d resolves for %d resolved alerts", len(pl.resolves), resolved)
	}
	for _, r := range pl.resolves {
		if r.Alert.Status != alert.StatusResolved || r.Fingerprint != r.Alert.Fingerprint || !r.StartsAt.Equal(r.Alert.StartsAt) {
			t.Fatalf("resolve %+v", r)
		}
	}
	checkRefresh(t, set, pl)
}

// checkRefresh checks that only firing alerts refresh, and only incidents of `for` rules.
func checkRefresh(t *testing.T, set *rules.Set, pl *plan) {
	t.Helper()
	for _, k := range pl.refresh {
		for _, r := range k.Except {
			if !slices.Contains(set.ForRules(), r) {
				t.Fatalf("refresh of %s leaves out %s, not a `for` rule", k.Alert.Name, r)
			}
		}
	}
	for _, r := range pl.refreshed() {
		if r.Status != alert.StatusFiring || set.Rule(r.rule) == nil || set.Rule(r.rule).For == 0 {
			t.Fatalf("refresh %s of a %s alert", r.rule, r.Status)
		}
	}
}

// checkOpening checks one upsert's drafts.
func checkOpening(t *testing.T, o opening) {
	t.Helper()
	if o.State != vocab.IncidentFiring {
		if len(o.actions)+len(o.escalate) > 0 {
			t.Fatalf("a %s incident of %s has actions", o.State, o.Rule)
		}
		if (o.State == vocab.IncidentPending) != !o.dueAt.IsZero() {
			t.Fatalf("a %s incident due at %v", o.State, o.dueAt)
		}
		return
	}
	if len(o.actions) != len(o.rule.Actions) {
		t.Fatalf("%d drafts for %d steps", len(o.actions), len(o.rule.Actions))
	}
	checkDrafts(t, o, vocab.PhaseActions, o.actions)
	if broke := failed(o.actions); o.escalate != nil && !broke || broke && len(o.rule.Escalate) > 0 && o.escalate == nil {
		t.Fatalf("%s: escalation drafted %v, a step failed %v", o.Rule, o.escalate != nil, failed(o.actions))
	}
	checkDrafts(t, o, vocab.PhaseEscalate, o.escalate)
}

func checkDrafts(t *testing.T, o opening, phase vocab.Phase, ds []draft) {
	t.Helper()
	broken := false
	for i, d := range ds {
		na := d.na
		if na.Rule != o.Rule || na.Phase != phase || na.Step != i || na.IncidentID != 0 || !na.At.IsZero() {
			t.Fatalf("draft %s/%d of %s: %+v", phase, i, o.Rule, na)
		}
		switch {
		case broken:
			if na.State != vocab.StateSkipped || na.Reason != vocab.ReasonCancelled || d.act != nil || d.err != nil {
				t.Fatalf("after a failed step: %s", d.line())
			}
		case d.err != nil:
			if na.State != vocab.StateFailed || na.Reason != vocab.ReasonBadParam || d.act != nil || na.Error != d.err.Error() {
				t.Fatalf("failed step: %s", d.line())
			}
			broken = true
		default:
			if d.act == nil || d.key == "" || (na.State != vocab.StatePlanned && na.State != vocab.StateAwaitingApproval) ||
				(na.Class != vocab.ClassNotify && na.Class != vocab.ClassDisruptive) {
				t.Fatalf("planned step: %s", d.line())
			}
		}
	}
}

func compareKeys(a, b store.IncidentUpsert) int {
	if a.Rule != b.Rule {
		return strings.Compare(a.Rule, b.Rule)
	}
	if a.Alert.Fingerprint != b.Alert.Fingerprint {
		return strings.Compare(a.Alert.Fingerprint, b.Alert.Fingerprint)
	}
	return a.Alert.StartsAt.Compare(b.Alert.StartsAt)
}

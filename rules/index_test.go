package rules

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
)

// testRule compiles when as Parse does, into a rule called name.
func testRule(t testing.TB, name, when string, forDur time.Duration) *Rule {
	t.Helper()
	u := &usage{}
	p, err := compileWhen(when, u)
	if err != nil {
		t.Fatalf("%s: %v", when, err)
	}
	return &Rule{Name: name, When: when, For: forDur, when: p, UsesFiring: u.firing}
}

func TestPinOf(t *testing.T) {
	for _, tc := range []struct{ when, want string }{
		{`alert.name == "X"`, "alert.name in [X]"},
		{`"X" == alert.name`, "alert.name in [X]"},
		{`alert.name in ["B", "A", "B"]`, "alert.name in [A B]"},
		{`alert.name in []`, "alert.name in []"},
		{`alert.labels.service == "api"`, "alert.labels.service in [api]"},
		{`alert.labels["service"] in ["api", "web"]`, "alert.labels.service in [api web]"},
		{`alert.annotations.team == "db"`, "alert.annotations.team in [db]"},
		{`alert.labels.missing == ""`, "alert.labels.missing in []"},
		{`alert.source == "probe"`, "alert.source in [probe]"},
		{`alert.fingerprint == "0123"`, "alert.fingerprint in [0123]"},
		{`alert.status == "firing"`, "alert.status in [firing]"},
		// The most selective field of the safe prefix; on a tie the first.
		{`alert.status == "firing" && alert.name == "X" && int(alert.labels.n) > 3`, "alert.name in [X]"},
		{`alert.labels.a == "1" and alert.labels.b == "2"`, "alert.labels.a in [1]"},
		{`alert.labels.a == "1" && alert.name in ["X", "Y"]`, "alert.name in [X Y]"},
		{`(alert.status == "firing" && alert.labels.s == "1") && alert.name == "X"`, "alert.name in [X]"},
		// || of terms on one field is one term.
		{`alert.name == "A" || alert.name == "B" || alert.name in ["C", "A"]`, "alert.name in [A B C]"},
		// Safe conjuncts before the term: !=, not, not in, ||, literals.
		{`alert.labels.severity != "info" && alert.name == "X"`, "alert.name in [X]"},
		{`"info" != alert.labels.severity && alert.name == "X"`, "alert.name in [X]"},
		{`!(alert.labels.env == "dev") && alert.name == "X"`, "alert.name in [X]"},
		{`alert.name not in ["Y"] && alert.labels.s == "1"`, "alert.labels.s in [1]"},
		{`(alert.name == "A" || alert.labels.s == "1") && alert.name == "X"`, "alert.name in [X]"},
		{`true && alert.name == "X"`, "alert.name in [X]"},
		// A conjunct that may fail (or calls something) ends the prefix: the terms after it are not
		// used, since the linear scan would report its error.
		{`int(alert.labels.n) > 3 && alert.name == "X"`, "residual"},
		{`alert.labels.s == "1" && int(alert.labels.n) > 3 && alert.name == "X"`, "alert.labels.s in [1]"},
		{`firing("M") && alert.name == "X"`, "residual"},
		{`alert.value > 3 && alert.name == "X"`, "residual"},
		{`split(alert.name, "-")[1] == "x" && alert.name == "X"`, "residual"},
		// Not terms.
		{`alert.name != "X"`, "residual"},
		{`alert.name == "A" || alert.labels.s == "1"`, "residual"},
		{`alert.name == "A" || int(alert.labels.n) > 1`, "residual"},
		{`!(alert.name == "X")`, "residual"},
		{`alert.name == alert.labels.s`, "residual"},
		{`alert.labels?.s == "1"`, "residual"},
		{`(alert.labels.s ?? "1") == "1"`, "residual"},
		{`alert.name matches "^X"`, "residual"},
		{`alert.name in ["A", 1]`, "residual"},
		{`lower(alert.name) == "x"`, "residual"},
		{`true`, "residual"},
		{`alert.name == "A" ? true : false`, "residual"},
		{`let n = alert.name; n == "X"`, "residual"},
		{`any(["X"], {# == alert.name})`, "residual"},
	} {
		got := "residual"
		if p, ok := pinOf(testRule(t, "r", tc.when, 0)); ok {
			got = p.String()
		}
		if got != tc.want {
			t.Errorf("%s: pinned on %q, want %q", tc.when, got, tc.want)
		}
	}
	if _, ok := pinOf(&Rule{Name: "unloaded"}); ok {
		t.Error("a rule without a compiled when is pinned")
	}
}

// outcome is one rule's evaluation for one alert.
func outcome(r *Rule, env *Env) string {
	ok, err := r.Match(env)
	switch {
	case err != nil:
		return r.Name + " error " + err.Error()
	case ok:
		return r.Name + " match"
	}
	return ""
}

// checkIndex checks that Candidates gives, for env, what every rule gives: the rules it leaves out
// are false without an error, and the candidates come in the set's order.
func checkIndex(t *testing.T, set *Set, env *Env) (candidates int) {
	t.Helper()
	cands := set.Candidates(env, nil)
	var linear, indexed []string
	next := 0
	for _, r := range set.Rules {
		o := outcome(r, env)
		if next < len(cands) && cands[next] == r {
			next++
			if o != "" {
				indexed = append(indexed, o)
			}
		} else if o != "" {
			t.Fatalf("rule %s (when: %s) is no candidate for %+v, but: %s", r.Name, r.When, env.Alert, o)
		}
		if o != "" {
			linear = append(linear, o)
		}
	}
	if next != len(cands) {
		t.Fatalf("candidates out of order or not of the set: %d of %d seen", next, len(cands))
	}
	if !slices.Equal(linear, indexed) {
		t.Fatalf("linear:\n%s\nindexed:\n%s", strings.Join(linear, "\n"), strings.Join(indexed, "\n"))
	}
	return len(cands)
}

// Atoms of random `when`s: terms, safe conjuncts, conjuncts that fail on some alerts and others
// that call something or read non-string fields.
var (
	indexAtoms = []func(r *rand.Rand) string{
		func(r *rand.Rand) string { return fmt.Sprintf(`alert.name == %q`, pick(r, indexNames)) },
		func(r *rand.Rand) string { return fmt.Sprintf(`%q == alert.name`, pick(r, indexNames)) },
		func(r *rand.Rand) string {
			return fmt.Sprintf(`alert.name in [%q, %q]`, pick(r, indexNames), pick(r, indexNames))
		},
		func(r *rand.Rand) string {
			return fmt.Sprintf(`(alert.name == %q || alert.name == %q)`, pick(r, indexNames), pick(r, indexNames))
		},
		func(r *rand.Rand) string { return fmt.Sprintf(`alert.labels.service == %q`, pick(r, indexServices)) },
		func(r *rand.Rand) string {
			return fmt.Sprintf(`alert.labels["service"] in [%q, %q]`, pick(r, indexServices), pick(r, indexServices))
		},
		func(r *rand.Rand) string { return fmt.Sprintf(`alert.annotations.team == %q`, pick(r, indexServices)) },
		func(r *rand.Rand) string {
			return fmt.Sprintf(`alert.status == %q`, pick(r, []string{"firing", "resolved"}))
		},
		func(r *rand.Rand) string {
			return fmt.Sprintf(`alert.source == %q`, pick(r, []string{"alertmanager", "probe"}))
		},
	}
	safeAtoms = []func(r *rand.Rand) string{
		func(r *rand.Rand) string { return fmt.Sprintf(`alert.name != %q`, pick(r, indexNames)) },
		func(r *rand.Rand) string { return fmt.Sprintf(`!(alert.labels.service == %q)`, pick(r, indexServices)) },
		func(r *rand.Rand) string { return fmt.Sprintf(`alert.name not in [%q]`, pick(r, indexNames)) },
		func(r *rand.Rand) string {
			return fmt.Sprintf(`(alert.name == %q || alert.labels.service == %q)`, pick(r, indexNames), pick(r, indexServices))
		},
		func(*rand.Rand) string { return `true` },
	}
	failingAtoms = []func(r *rand.Rand) string{
		func(*rand.Rand) string { return `int(alert.labels.n) > 3` },             // n missing or not a number
		func(*rand.Rand) string { return `split(alert.name, "-")[1] != "x"` },    // no "-" in the name
		func(*rand.Rand) string { return `firing("M", {"a": len(alert.name)})` }, // a label that is no string
		func(*rand.Rand) string { return `(alert.labels.n ?? 0) > 2` },           // a string compared to a number
	}
	otherAtoms = []func(r *rand.Rand) string{
		func(*rand.Rand) string { return `alert.value > 5` },
		func(*rand.Rand) string { return `!firing("Maintenance")` },
		func(r *rand.Rand) string {
			return fmt.Sprintf(`alert.labels.service matches "^%s"`, pick(r, indexServices))
		},
		func(*rand.Rand) string { return `len(alert.labels) > 2` },
		func(*rand.Rand) string { return `alert.labels?.service == "api"` },
	}
	indexNames    = []string{"A", "B", "C", "D", "E", "A-1", "B-2", ""}
	indexServices = []string{"api", "web", "db", ""}
)

func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// randomWhen is a conjunction of one to four atoms, sometimes or-ed or negated as a whole.
func randomWhen(r *rand.Rand) string {
	kinds := [][]func(*rand.Rand) string{indexAtoms, indexAtoms, safeAtoms, failingAtoms, otherAtoms}
	n := 1 + r.IntN(4)
	cs := make([]string, n)
	for i := range cs {
		cs[i] = pick(r, pick(r, kinds))(r)
	}
	op := " && "
	if r.IntN(4) == 0 {
		op = " and "
	}
	w := strings.Join(cs, op)
	switch r.IntN(10) {
	case 0:
		w = "(" + w + ") || " + pick(r, pick(r, kinds))(r)
	case 1:
		w = "!(" + w + ")"
	}
	return w
}

func randomAlert(r *rand.Rand) alert.Alert {
	a := alert.Alert{Source: pick(r, []string{"alertmanager", "probe"}), Status: pick(r, []alert.Status{alert.StatusFiring, alert.StatusResolved}),
		Name: pick(r, append(indexNames, "Other")), StartsAt: t0.Add(-time.Minute), Fingerprint: "f"}
	if r.IntN(8) > 0 {
		a.Labels = map[string]string{}
		if r.IntN(4) > 0 {
			a.Labels["service"] = pick(r, append(indexServices, "other"))
		}
		if r.IntN(3) > 0 {
			a.Labels["n"] = pick(r, []string{"1", "7", "x", ""})
		}
	}
	if r.IntN(2) == 0 {
		a.Annotations = map[string]string{"team": pick(r, indexServices)}
	}
	if r.IntN(2) == 0 {
		v := float64(r.IntN(10))
		a.Value = &v
	}
	return a
}

// The index gives what the linear scan gives, over random rule sets and alerts: the same matches,
// the same failures, in the same order.
func TestIndexEqualsLinearScan(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 15))
	pinned, rulesN, evaluated, all := 0, 0, 0, 0
	for range 200 {
		set := &Set{}
		for i := range 1 + r.IntN(60) {
			var f time.Duration
			if r.IntN(3) == 0 {
				f = time.Minute
			}
			set.Rules = append(set.Rules, testRule(t, fmt.Sprintf("r%02d", i), randomWhen(r), f))
		}
		rulesN += len(set.Rules)
		for _, rule := range set.Rules {
			if _, ok := pinOf(rule); ok {
				pinned++
			}
		}
		firing := firingSet{{"alertname": "Maintenance"}}
		for range 50 {
			a := randomAlert(r)
			var fs FiringSet
			if r.IntN(2) == 0 {
				fs = firing
			}
			evaluated += checkIndex(t, set, NewEnv(a, t0, fs))
			all += len(set.Rules)
		}
		want := []string{}
		for _, rule := range set.Rules {
			if rule.For > 0 {
				want = append(want, rule.Name)
			}
		}
		if got := set.ForRules(); !slices.Equal(got, want) {
			t.Fatalf("ForRules() = %v, want %v", got, want)
		}
	}
	t.Logf("%d of %d rules pinned; %d of %d evaluations left", pinned, rulesN, evaluated, all)
	if pinned*5 < rulesN || evaluated*10 > all*9 {
		t.Errorf("%d of %d rules pinned, %d of %d evaluations left: the random rules barely use the index", pinned, rulesN, evaluated, all)
	}
}

// A set loaded from files is indexed at load; one built by hand is indexed on first use.
func TestCandidates(t *testing.T) {
	set := &Set{Rules: []*Rule{
		testRule(t, "a", `alert.name == "A"`, 0),
		testRule(t, "any", `alert.value > 1`, time.Minute),
		testRule(t, "b-or-a", `alert.name in ["B", "A"]`, 0),
		testRule(t, "api", `alert.labels.service == "api" && alert.value > 1`, time.Minute),
		testRule(t, "no-service", `alert.labels.service == ""`, 0),
	}}
	for _, tc := range []struct {
		name    string
		service string
		want    []string
	}{
		{"A", "", []string{"a", "any", "b-or-a", "no-service"}},
		{"B", "api", []string{"any", "b-or-a", "api"}},
		{"C", "web", []string{"any"}},
	} {
		a := alert.Alert{Name: tc.name}
		if tc.service != "" {
			a.Labels = map[string]string{"service": tc.service}
		}
		var got []string
		for _, r := range set.Candidates(NewEnv(a, t0, nil), nil) {
			got = append(got, r.Name)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s/%s: candidates %v, want %v", tc.name, tc.service, got, tc.want)
		}
	}
	if got := set.ForRules(); !slices.Equal(got, []string{"any", "api"}) {
		t.Errorf("ForRules() = %v", got)
	}
}

// FuzzIndex checks one `when` against one alert: when the index leaves the rule out, the rule is
// false for the alert, without an error.
func FuzzIndex(f *testing.F) {
	f.Add(`alert.name == "A" && int(alert.labels.n) > 3`, "A", "api", "x", true)
	f.Add(`alert.labels.service in ["api", "web"] || alert.labels.service == "db"`, "B", "db", "", false)
	f.Add(`alert.status == "resolved" && alert.annotations.team == ""`, "", "", "1", true)
	f.Add(`alert.name != "A" && alert.name == ""`, "", "web", "7", false)
	f.Fuzz(func(t *testing.T, when, name, service, n string, labels bool) {
		u := &usage{}
		p, err := compileWhen(when, u)
		if err != nil {
			return
		}
		a := alert.Alert{Name: name, Status: alert.StatusFiring, Annotations: map[string]string{"team": n}}
		if labels {
			a.Labels = map[string]string{"service": service, "n": n}
		}
		set := &Set{Rules: []*Rule{{Name: "r", When: when, when: p}}}
		checkIndex(t, set, NewEnv(a, t0, nil))
	})
}

package rules

import (
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/alert"
)

// BenchmarkMatch is one rule evaluated against one alert, as the engine does per alert and rule.
func BenchmarkMatch(b *testing.B) {
	rs := mustParse(b, `
rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing" && alert.labels.severity in ["warning", "critical"]
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x"}
`)
	env := NewEnv(crashloop(alert.StatusFiring), t0, nil)
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := rs[0].Match(env); !ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

// BenchmarkMatchMiss is the common case: a rule whose alert name does not match.
func BenchmarkMatchMiss(b *testing.B) {
	rs := mustParse(b, `
rules:
  - name: r
    when: alert.name == "BillingIngestStale" && alert.status == "firing"
    actions:
      - handler: http.request
        params: {url: "http://status.example.com/x"}
`)
	env := NewEnv(crashloop(alert.StatusFiring), t0, nil)
	b.ReportAllocs()
	for b.Loop() {
		if ok, err := rs[0].Match(env); ok || err != nil {
			b.Fatal(ok, err)
		}
	}
}

func BenchmarkNewEnv(b *testing.B) {
	a := crashloop(alert.StatusFiring)
	b.ReportAllocs()
	for b.Loop() {
		_ = NewEnv(a, t0, nil)
	}
}

// BenchmarkRender renders the params of a typical action: two templates in a nested map and a
// toJSON body.
func BenchmarkRender(b *testing.B) {
	rs := mustParse(b, renderRules)
	env := NewEnv(crashloop(alert.StatusFiring), t0, nil)
	act := rs[0].Actions[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := act.Render(env); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRenderSimple renders {namespace, pod} from labels, like k8s.restart_pod.
func BenchmarkRenderSimple(b *testing.B) {
	rs := mustParse(b, `
rules:
  - name: r
    when: 'true'
    actions:
      - handler: k8s.delete_pod
        approval: required
        params: {namespace: "{{ alert.labels.namespace }}", pod: "{{ alert.labels.pod }}"}
`)
	env := NewEnv(crashloop(alert.StatusFiring), t0, nil)
	act := rs[0].Actions[0]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := act.Render(env); err != nil {
			b.Fatal(err)
		}
	}
}

// pack1000 is a rule pack as a real one looks: 900 rules pin alert.name (600 rules on 300 names)
// or alert.labels.service (300 rules on 150 services), 100 pin nothing the index can use.
func pack1000(b *testing.B) *Set {
	var y strings.Builder
	y.WriteString("rules:\n")
	rule := func(name, when string) {
		fmt.Fprintf(&y, "  - name: %s\n    when: '%s'\n    actions:\n      - handler: http.request\n        params: {url: \"http://status.example.com/x\"}\n", name, when)
	}
	for i := range 600 {
		switch i % 3 {
		case 0:
			rule(fmt.Sprintf("name-%d", i), fmt.Sprintf(`alert.name == "Alert%03d" && alert.status == "firing" && alert.labels.severity in ["warning", "critical"]`, i/2))
		case 1:
			rule(fmt.Sprintf("name-%d", i), fmt.Sprintf(`alert.name == "Alert%03d" && alert.value > 80`, i/2))
		default:
			rule(fmt.Sprintf("name-%d", i), fmt.Sprintf(`alert.name in ["Alert%03d", "Other%03d"] && alert.labels.namespace != "kube-system"`, i/2, i))
		}
	}
	for i := range 300 {
		rule(fmt.Sprintf("service-%d", i), fmt.Sprintf(`alert.labels.service == "svc%03d" && alert.labels.severity == "critical"`, i/2))
	}
	for i := range 100 {
		switch i % 4 {
		case 0:
			rule(fmt.Sprintf("residual-%d", i), fmt.Sprintf(`alert.value > %d && alert.labels.severity == "critical"`, 50+i))
		case 1:
			rule(fmt.Sprintf("residual-%d", i), fmt.Sprintf(`alert.labels.namespace matches "^team-%d-"`, i))
		case 2:
			rule(fmt.Sprintf("residual-%d", i), fmt.Sprintf(`alert.name startsWith "Kube%d" || alert.labels.service == "svc%03d"`, i, i))
		default:
			rule(fmt.Sprintf("residual-%d", i), fmt.Sprintf(`len(alert.labels) > %d && alert.labels.team == "t%d"`, 20+i, i))
		}
	}
	rs := mustParse(b, y.String())
	if len(rs) != 1000 {
		b.Fatalf("%d rules", len(rs))
	}
	return &Set{Rules: rs}
}

// BenchmarkMatch1000 is alerts against 1,000 rules (pack1000), one by one: the candidates of the
// index evaluated, and every rule evaluated (the linear scan), in the same run. An op is a batch
// of 64 alerts through each, one after the other (as the engine evaluates a batch); it reports the
// time per alert of each and their ratio (index_ns/alert, linear_ns/alert, speedup).
func BenchmarkMatch1000(b *testing.B) {
	set := pack1000(b)
	envs := make([]*Env, 64)
	for i := range envs {
		a := crashloop(alert.StatusFiring)
		a.Name = fmt.Sprintf("Alert%03d", i*37%300)
		a.Labels = maps.Clone(a.Labels)
		a.Labels["service"] = fmt.Sprintf("svc%03d", i*11%150)
		a.Labels["severity"] = "critical"
		v := float64(i)
		a.Value = &v
		envs[i] = NewEnv(a, t0, nil)
	}
	var buf []*Rule
	var indexed, linear time.Duration
	matches := 0
	b.ReportAllocs()
	for b.Loop() {
		start := time.Now()
		for _, env := range envs {
			buf = set.Candidates(env, buf[:0])
			for _, r := range buf {
				if ok, _ := r.Match(env); ok {
					matches++
				}
			}
		}
		mid := time.Now()
		for _, env := range envs {
			for _, r := range set.Rules {
				if ok, _ := r.Match(env); ok {
					matches--
				}
			}
		}
		linear += time.Since(mid)
		indexed += mid.Sub(start)
	}
	if matches != 0 {
		b.Fatalf("the index and the linear scan disagree by %d matches", matches)
	}
	n := float64(b.N * len(envs))
	b.ReportMetric(float64(indexed.Nanoseconds())/n, "index_ns/alert")
	b.ReportMetric(float64(linear.Nanoseconds())/n, "linear_ns/alert")
	b.ReportMetric(float64(linear)/float64(indexed), "speedup")
}

// BenchmarkChainedStep measures what a chained step costs when it runs: its deferred params
// compiled again from their text as written (CompileDeferred) and rendered from the earlier
// step's result, against rendering the rule's own compiled action (no compile), in the same run.
func BenchmarkChainedStep(b *testing.B) {
	rs := mustParse(b, chainRules)
	act := rs[0].Actions[1]
	raw := map[string]any{}
	for _, k := range act.Deferred() {
		raw[k] = act.Params[k]
	}
	a := alert.Alert{Name: "DatabaseDown", Labels: map[string]string{"alertname": "DatabaseDown", "cluster": "orders"}}
	env := NewEnv(a, t0, nil).WithSteps(map[string]map[string]any{"promote": {"new_primary": "10.0.0.7:5432", "timeline": 3}})
	b.Run("compiled_at_load", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := act.Render(env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compiled_at_run", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			c, err := CompileDeferred(act.Handler, raw, fakeCatalog{})
			if err != nil {
				b.Fatal(err)
			}
			if _, err := c.Render(env); err != nil {
				b.Fatal(err)
			}
		}
	})
}

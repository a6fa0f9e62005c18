package rules

import (
	"testing"

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

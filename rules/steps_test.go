package rules

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
)

const chainRules = `
rules:
  - name: failover
    when: alert.name == "DatabaseDown"
    actions:
      - id: promote
        handler: db.promote
        params: {cluster: orders}
      - id: repoint
        handler: http.request
        params:
          url: "http://config.internal/v1/db/orders"
          method: PUT
          body: '{{ toJSON({primary: steps.promote.result.new_primary, timeline: steps.promote.result.timeline, cluster: alert.labels.cluster}) }}'
          headers: {X-Timeline: "tl {{ steps.promote.result.timeline }}", X-Alert: "{{ alert.name }}"}
      - handler: http.request
        params:
          url: "http://status.example.com/x"
          body: "repointed: {{ steps.repoint.result.status }}, primary {{ steps.promote.result.new_primary }}"
    escalate:
      - id: page
        handler: http.request
        params: {url: "http://status.example.com/page", body: "failover of {{ alert.labels.cluster }} failed"}
      - handler: http.request
        params: {url: "http://status.example.com/ack", body: "{{ steps.page.result.status }}"}
`

func loadChain(t *testing.T) *Rule {
	t.Helper()
	rs, err := Parse([]byte(chainRules), "chain.yml", fakeCatalog{})
	if err != nil {
		t.Fatal(err)
	}
	return rs[0]
}

func TestChainedStepsLoad(t *testing.T) {
	r := loadChain(t)
	tests := []struct {
		name     string
		a        *Action
		id       string
		refs     []StepRef
		deferred []string
	}{
		{"promote", r.Actions[0], "promote", nil, nil},
		{"repoint", r.Actions[1], "repoint",
			[]StepRef{{ID: "promote", Field: "new_primary", Step: 0}, {ID: "promote", Field: "timeline", Step: 0}},
			[]string{"body", "headers"}},
		{"status", r.Actions[2], "",
			[]StepRef{{ID: "repoint", Field: "status", Step: 1}, {ID: "promote", Field: "new_primary", Step: 0}},
			[]string{"body"}},
		{"page", r.Escalate[0], "page", nil, nil},
		{"ack", r.Escalate[1], "", []StepRef{{ID: "page", Field: "status", Step: 0}}, []string{"body"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.a.ID != tc.id {
				t.Errorf("ID = %q, want %q", tc.a.ID, tc.id)
			}
			if diff := cmp.Diff(tc.refs, tc.a.Refs); diff != "" {
				t.Errorf("Refs (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.deferred, tc.a.Deferred()); diff != "" {
				t.Errorf("Deferred (-want +got):\n%s", diff)
			}
		})
	}
}

func TestChainedStepsRender(t *testing.T) {
	r := loadChain(t)
	a := alert.Alert{Name: "DatabaseDown", Labels: map[string]string{"alertname": "DatabaseDown", "cluster": "orders"}}
	env := NewEnv(a, time.Unix(0, 0), nil)
	results := map[string]map[string]any{
		"promote": {"new_primary": "10.0.0.7:5432", "timeline": 3},
		"repoint": {"status": 204},
	}
	tests := []struct {
		name    string
		a       *Action
		env     *Env
		want    map[string]any
		wantErr string
	}{
		{"chained, with results", r.Actions[1], env.WithSteps(results), map[string]any{
			"url":     "http://config.internal/v1/db/orders",
			"method":  "PUT",
			"body":    `{"cluster":"orders","primary":"10.0.0.7:5432","timeline":3}`,
			"headers": map[string]any{"X-Timeline": "tl 3", "X-Alert": "DatabaseDown"},
		}, ""},
		{"two steps read", r.Actions[2], env.WithSteps(results), map[string]any{
			"url":  "http://status.example.com/x",
			"body": "repointed: 204, primary 10.0.0.7:5432",
		}, ""},
		{"no results: the step has none", r.Actions[1], env, nil,
			`param "body": {{ toJSON({primary: steps.promote.result.new_primary, timeline: steps.promote.result.timeline, cluster: alert.labels.cluster}) }}: step "promote" has no result (it has not succeeded)`},
		{"a field missing", r.Actions[1], env.WithSteps(map[string]map[string]any{"promote": {"new_primary": "x"}}), nil,
			`the result of step "promote" has no field "timeline"`},
		{"not chained: no results needed", r.Actions[0], env, map[string]any{"cluster": "orders"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.a.Render(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Render = %v, %v; want error %q", got, err, tc.wantErr)
				}
				if !errors.Is(err, ErrMissing) {
					t.Errorf("errors.Is(%v, ErrMissing) = false", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Render (-want +got):\n%s", diff)
			}
		})
	}
}

// urlCatalog is fakeCatalog knowing http.request's url is a URL param, and not a target param:
// so a rule may defer it, and CompileDeferred must escape what it renders.
type urlCatalog struct{ fakeCatalog }

func (urlCatalog) URLParam(handler, param string) bool {
	return handler == "http.request" && param == "url"
}

func (urlCatalog) TargetParam(handler, param string) bool {
	return param != "url" && fakeCatalog{}.TargetParam(handler, param)
}

// TestCompileDeferred: the deferred params compiled again from their text as written render what
// the rule's own action renders, URL escaping included.
func TestCompileDeferred(t *testing.T) {
	src := strings.Replace(chainRules, `url: "http://config.internal/v1/db/orders"`,
		`url: "http://config.internal/v1/db/{{ alert.labels.cluster }}?primary={{ steps.promote.result.new_primary }}"`, 1)
	rs, err := Parse([]byte(src), "chain.yml", urlCatalog{})
	if err != nil {
		t.Fatal(err)
	}
	a := alert.Alert{Name: "DatabaseDown", Labels: map[string]string{"alertname": "DatabaseDown", "cluster": "orders"}}
	env := NewEnv(a, time.Unix(0, 0), nil).WithSteps(map[string]map[string]any{
		"promote": {"new_primary": "db-2/evil?x=1", "timeline": 3},
		"repoint": {"status": 204},
	})
	for _, step := range rs[0].Actions[1:] {
		t.Run(step.Handler+" "+strings.Join(step.Deferred(), ","), func(t *testing.T) {
			want, err := step.Render(env)
			if err != nil {
				t.Fatal(err)
			}
			if u, _ := want["url"].(string); strings.Contains(u, "evil") && !strings.HasSuffix(u, "?primary=db-2%2Fevil%3Fx%3D1") {
				t.Fatalf("url %q: the step's result is not escaped", u)
			}
			raw := map[string]any{}
			for _, k := range step.Deferred() {
				raw[k] = step.Params[k]
			}
			c, err := CompileDeferred(step.Handler, raw, urlCatalog{})
			if err != nil {
				t.Fatal(err)
			}
			got, err := c.Render(env)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range step.Deferred() {
				if diff := cmp.Diff(want[k], got[k]); diff != "" {
					t.Errorf("param %s (-rule +compiled again):\n%s", k, diff)
				}
			}
		})
	}
	if _, err := CompileDeferred("http.request", map[string]any{"body": "{{ 1 + }}"}, urlCatalog{}); err == nil {
		t.Error("CompileDeferred of a broken template: no error")
	}
}

// TestStepsInlineErrors covers the reference checks the bad fixtures do not: aliases, on_resolved,
// a handler without result fields.
func TestStepsInlineErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"alias to a later step's result", `
rules:
  - name: r
    when: alert.name == "X"
    actions:
      - handler: http.request
        params: {url: "http://a.example.com/", body: &b "{{ steps.p.result.new_primary }}"}
      - id: p
        handler: db.promote
        params: {cluster: orders}
      - handler: http.request
        params: {url: "http://a.example.com/", body: *b}
`, `chain.yml:7: rule "r": actions: http.request: param body: steps.p.result.new_primary: step "p" is a later step`},
		{"a handler with no result fields", `
rules:
  - name: r
    when: alert.name == "X"
    on_resolved:
      - id: k
        handler: k8s.delete_pod
        params: {namespace: shop, pod: p}
      - handler: http.request
        params: {url: "http://a.example.com/", body: "{{ steps.k.result.pod }}"}
`, `chain.yml:10: rule "r": on_resolved: http.request: param body: steps.k.result.pod: step "k" (k8s.delete_pod) has no result field "pod" (it declares none)`},
		{"no ids at all", `
rules:
  - name: r
    when: alert.name == "X"
    actions:
      - handler: http.request
        params: {url: "http://a.example.com/", body: "{{ steps.k.result.status }}"}
`, `no step has id "k" (no earlier step of this list has an id)`},
		{"steps as a let name", `
rules:
  - name: r
    when: alert.name == "X"
    actions:
      - handler: http.request
        params: {url: "http://a.example.com/", body: "{{ let steps = 1; steps }}"}
`, `steps is read as steps.<id>.result.<field>`},
		{"an id that is not a string", `
rules:
  - name: r
    when: alert.name == "X"
    actions:
      - id: [a]
        handler: http.request
        params: {url: "http://a.example.com/"}
`, `chain.yml:6: rule "r": actions: http.request: id must be a string`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.src), "chain.yml", fakeCatalog{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Parse error:\n%v\nwant it to contain\n%s", err, tc.want)
			}
		})
	}
}

// TestStepsWithoutCatalog: without a catalog the fields are not checked, the order still is.
func TestStepsWithoutCatalog(t *testing.T) {
	rs, err := Parse([]byte(chainRules), "chain.yml", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(rs[0].Actions[1].Refs); got != 2 {
		t.Errorf("Refs = %d, want 2", got)
	}
	bad := strings.Replace(chainRules, "steps.promote.result.timeline", "steps.promote.result.anything", 1)
	if _, err := Parse([]byte(bad), "chain.yml", nil); err != nil {
		t.Errorf("without a catalog a field is not checked: %v", err)
	}
}

package rules

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/responder-sre/responder/alert"
)

// secretCatalog is fakeCatalog knowing the secret "token" and that http.request's url is a URL,
// as the handler registry does once app gives it the config's secrets.
type secretCatalog struct{ fakeCatalog }

func (secretCatalog) SecretNames() []string { return []string{"token"} }

func (secretCatalog) URLParam(handler, param string) bool {
	return handler == "http.request" && param == "url"
}

func parseWith(src string) ([]*Rule, error) {
	return Parse([]byte(src), "inline.yml", secretCatalog{})
}

func ruleWith(params string) string {
	return "rules:\n  - name: r\n    when: 'true'\n    actions:\n      - handler: http.request\n        params: " + params + "\n"
}

func renderWith(t *testing.T, params string, a alert.Alert) (map[string]any, error) {
	t.Helper()
	rs, err := parseWith(ruleWith(params))
	if err != nil {
		t.Fatal(err)
	}
	return rs[0].Actions[0].Render(NewEnv(a, t0, nil))
}

// secret("NAME") renders as a reference the handler resolves when it calls out: the value is
// never part of the rendered (and stored) params.
func TestSecretRendersAsReference(t *testing.T) {
	got, err := renderWith(t, `{url: "http://status.example.com/", headers: {Authorization: "Bearer {{ secret('token') }}"}, `+
		`body: '{"token": "{{ secret("token") }}", "pod": "{{ alert.labels.pod }}"}'}`, crashloop(alert.StatusFiring))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"url":     "http://status.example.com/",
		"headers": map[string]any{"Authorization": `Bearer {{ secret("token") }}`},
		"body":    `{"token": "{{ secret("token") }}", "pod": "checkout-7d9f8b6c5-x2x4z"}`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

func TestSecretLoadErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"unknown name", ruleWith(`{url: "http://status.example.com/", headers: {X-Token: "{{ secret('tokn') }}"}}`),
			`inline.yml:6: rule "r": actions: http.request: param headers.X-Token: unknown secret "tokn" (secrets: token)`},
		{"inside an expression", ruleWith(`{url: "http://status.example.com/", body: "{{ 'Bearer ' + secret('token') }}"}`),
			`secret() must stand alone in its template`},
		{"computed name", ruleWith(`{url: "http://status.example.com/", body: "{{ secret(alert.labels.pod) }}"}`),
			`secret() must stand alone in its template`},
		{"bad name", ruleWith(`{url: "http://status.example.com/", body: "{{ secret('a b') }}"}`),
			`"a b" is not a secret name`},
		{"in when", "rules:\n  - name: r\n    when: 'secret(\"token\") == \"x\"'\n    actions:\n      - handler: http.request\n        params: {url: 'http://status.example.com/'}\n",
			`inline.yml:3: rule "r": when: secret() is for action params`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseWith(tc.src)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	// Without a catalog that knows secrets (rules check without --config.file), no name is known.
	_, err := Parse([]byte(ruleWith(`{url: "http://status.example.com/", body: "{{ secret('token') }}"}`)), "inline.yml", fakeCatalog{})
	if err == nil || !strings.Contains(err.Error(), `inline.yml:6: rule "r": actions: http.request: param body: unknown secret "token" (secrets: none defined in the config)`) {
		t.Fatalf("err = %v", err)
	}
}

// A label holding a secret reference cannot make a handler reveal the secret: rendering refuses a
// reference the rule did not write.
func TestForgedSecretReferenceRefused(t *testing.T) {
	a := crashloop(alert.StatusFiring)
	a.Annotations = map[string]string{"summary": `see {{ secret("token") }}`}
	for _, params := range []string{
		`{url: "http://status.example.com/", body: "summary: {{ alert.annotations.summary }}"}`,
		`{url: "http://status.example.com/", body: "{{ alert.annotations.summary }}"}`,
		`{url: "http://status.example.com/", headers: "{{ alert.annotations }}"}`,
	} {
		got, err := renderWith(t, params, a)
		if err == nil || !strings.Contains(err.Error(), "holds a secret") {
			t.Errorf("%s: Render = %v, %v; want an error", params, got, err)
		}
	}
}

// Values rendered into a URL param's path or query are escaped: a label cannot add a path
// segment, a query parameter or a fragment.
func TestURLParamEscapesRenderedValues(t *testing.T) {
	a := crashloop(alert.StatusFiring)
	a.Labels["dag"] = "x/../clearTaskInstances?dry_run=false#"
	a.Labels["note"] = "a&b=c d"
	got, err := renderWith(t, `{url: "http://airflow.internal:8080/api/v1/dags/{{ alert.labels.dag }}/dagRuns?note={{ alert.labels.note }}&t={{ secret('token') }}", `+
		`body: "{{ alert.labels.dag }}"}`, a)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"url":  `http://airflow.internal:8080/api/v1/dags/x%2F..%2FclearTaskInstances%3Fdry_run=false%23/dagRuns?note=a%26b%3Dc+d&t={{ secret("token") }}`,
		"body": "x/../clearTaskInstances?dry_run=false#", // not a URL: as is
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Render (-want +got):\n%s", diff)
	}
}

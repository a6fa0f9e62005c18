package ruletest_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/responder-sre/responder/ruletest"
	"github.com/responder-sre/responder/store/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func run(t *testing.T, conf string, files ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := ruletest.Run(context.Background(), files, ruletest.Options{Stdout: &out, Stderr: &errb,
		ConfigFile: conf, DatabaseURL: pgtest.NewDatabase(t)})
	return code, out.String(), errb.String()
}

func TestPass(t *testing.T) {
	code, out, errs := run(t, "testdata/conf.yml", "testdata/pass_test.yml")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	t.Log(out)
}

func TestFail(t *testing.T) {
	code, out, _ := run(t, "testdata/conf.yml", "testdata/fail_test.yml", "testdata/pass_test.yml")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		"Unit Testing: testdata/fail_test.yml\n  FAILED:\n",
		`testdata/fail_test.yml:4: test "wrong summary":`,
		"exp_actions differ (-expected +got):",
		`string("web is down")`, // cmp's diff spacing is deliberately unstable: match the values
		`string("api is down")`,
		`testdata/fail_test.yml:10: test "must not act but does":`,
		`testdata/fail_test.yml:20: test "cooldown refusal is shown":`,
		"not acted (refused by a guard or cancelled):",
		"retrigger actions http.request (cooldown): cooldown until 2026-11-22T10:25:00Z",
		"Unit Testing: testdata/pass_test.yml\n  SUCCESS\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, `test "passes"`) {
		t.Errorf("a passing test is reported:\n%s", out)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name, file string
		want       []string
	}{
		{"rule file error names file:line", "testdata/badrule_test.yml", []string{"testdata/bad-rules.yml:3:", "lables"}},
		{"prior state that cannot happen", "testdata/badprior_test.yml", []string{"testdata/badprior_test.yml:5:", `rule "retrigger" did not act`}},
		{"missing file", "testdata/nope_test.yml", []string{"no such file"}},
		{"step results that cannot be", "testdata/badsteps_test.yml", []string{
			`testdata/badsteps_test.yml:6: test "results of a step that does not exist": step_results: no step of the rule files has id "trigga" (ids: trigger)`,
			`testdata/badsteps_test.yml:11: test "a field the handler does not declare": step_results: step "trigger" (http.request) has no result field "body" (fields: status)`,
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := run(t, "testdata/conf.yml", tc.file)
			if code != 1 {
				t.Fatalf("exit %d, want 1\n%s", code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(out+errs, w) {
					t.Errorf("output lacks %q:\n%s%s", w, out, errs)
				}
			}
		})
	}
}

// TestChainedSteps: a chained step waits unrendered behind an approval; approved (approve: true),
// it renders from the recorded step's result fields, stand-ins or the test's step_results.
func TestChainedSteps(t *testing.T) {
	code, out, errs := run(t, "testdata/conf.yml", "testdata/chain_test.yml")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
}

func TestBadConfig(t *testing.T) {
	var out, errb bytes.Buffer
	code := ruletest.Run(context.Background(), []string{"testdata/pass_test.yml"}, ruletest.Options{Stdout: &out, Stderr: &errb,
		ConfigFile: "testdata/nope.yml"})
	if code != 1 || !strings.Contains(errb.String(), "nope.yml") {
		t.Fatalf("exit %d, stderr %q", code, errb.String())
	}
}

// TestThrowawayServer runs without a database URL: Run starts (and stops) its own server.
func TestThrowawayServer(t *testing.T) {
	var out, errb bytes.Buffer
	code := ruletest.Run(context.Background(), []string{"testdata/pass_test.yml"}, ruletest.Options{Stdout: &out, Stderr: &errb,
		ConfigFile: "testdata/conf.yml"})
	if code != 0 || !strings.Contains(out.String(), "SUCCESS") {
		t.Fatalf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}
}

// TestVerify: a rule's verify is testable: the restart verifying, not recovered at the deadline
// (and escalating), or recovered when resolve_after resolves the alerts in time.
func TestVerify(t *testing.T) {
	code, out, errs := run(t, "testdata/conf.yml", "testdata/verify_test.yml")
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	code, out, _ = run(t, "testdata/conf.yml", "testdata/verify_fail_test.yml")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{
		`testdata/verify_fail_test.yml:4: test "a not_recovered restart must be expected as such":`,
		`Failed:   "not_recovered: verify: the incident's resolution (its alert still firing) did not hold by 2026-11-22T10:05:00Z"`,
		`Verify:   "not_recovered"`,
		`testdata/verify_fail_test.yml:11: test "recovered is not verifying":`,
		`"recovered"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

package ruletest_test

import (
	"path/filepath"
	"testing"
	"time"
)

// TestRunbookPack runs the shipped rule pack's tests, so CI keeps them green.
func TestRunbookPack(t *testing.T) {
	files, err := filepath.Glob("../examples/runbook/*_test.yml")
	variants, verr := filepath.Glob("../examples/runbook/variants/*_test.yml")
	if err != nil || verr != nil || len(files) == 0 || len(variants) == 0 {
		t.Fatalf("no rule pack tests found: %v %v", err, verr)
	}
	files = append(files, variants...)
	start := time.Now()
	code, out, errs := run(t, "../examples/runbook/handlers.yml", files...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("%d files in %s\n%s", len(files), time.Since(start), out)
}

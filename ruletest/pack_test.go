package ruletest_test

import (
	"path/filepath"
	"testing"
	"time"
)

// TestRunbookPack runs the shipped rule pack's tests, so CI keeps them green.
func TestRunbookPack(t *testing.T) {
	files, err := filepath.Glob("../examples/runbook/*_test.yml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no rule pack tests found: %v", err)
	}
	start := time.Now()
	code, out, errs := run(t, "../examples/runbook/handlers.yml", files...)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, out, errs)
	}
	t.Logf("%d files in %s\n%s", len(files), time.Since(start), out)
}

package main_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// `rules check --config.file=F FILE` where FILE is also in F's rule_files loads it once, however it
// is spelled; a name shared by two different files is still a duplicate.
func TestRulesCheckFileAlsoInConfig(t *testing.T) {
	dir := t.TempDir()
	rule := "rules:\n  - name: %s\n    when: alert.name == \"X\"\n    actions:\n      - handler: page.webhook\n        params: {summary: \"{{ alert.name }}\"}\n"
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.WriteFile(filepath.Join(dir, "rules.yml"), []byte(fmt.Sprintf(rule, "x")), 0o644))
	must(os.WriteFile(filepath.Join(dir, "other.yml"), []byte(fmt.Sprintf(rule, "x")), 0o644))
	must(os.WriteFile(filepath.Join(dir, "responder.yml"), []byte("rule_files: [rules.yml]\n"), 0o644))
	check := func(wd string, args ...string) (string, int) {
		cmd := exec.Command(binary, append([]string{"rules", "check"}, args...)...)
		cmd.Dir = wd
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	for _, args := range [][]string{
		{"--config.file=" + filepath.Join(dir, "responder.yml"), filepath.Join(dir, "rules.yml")},
		{"--config.file=responder.yml", "rules.yml"},
		{"--config.file=responder.yml", "./rules.yml", "../" + filepath.Base(dir) + "/rules.yml"},
	} {
		out, code := check(dir, args...)
		if code != 0 || !strings.Contains(out, "SUCCESS: 1 rules in 1 files") {
			t.Errorf("rules check %q: exit %d, want 0 and the file once:\n%s", args, code, out)
		}
	}
	out, code := check(dir, "--config.file=responder.yml", "other.yml")
	if code != 1 || !strings.Contains(out, `other.yml:2: duplicate rule name "x" (also at `+filepath.Join(dir, "rules.yml")+":2)") {
		t.Errorf("rules check with a real duplicate: exit %d, want 1 naming both files:\n%s", code, out)
	}
}

// serve --web.no-auth refuses a listen address other hosts can reach, with a message naming the
// flag that allows it; with --web.no-auth.unsafe-any-address it starts, and warns.
func TestServeNoAuthListenAddress(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "responder.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("database: {url: %q}\n", pgtest.NewDatabase(t))), 0o600); err != nil {
		t.Fatal(err)
	}
	serve := []string{"serve", "--config.file=" + cfg, "--storage.path=" + filepath.Join(dir, "data"), "--web.no-auth"}
	for _, addr := range []string{"0.0.0.0:0", ":0"} {
		// Bounded: a serve that does not refuse would run until killed.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		b, err := exec.CommandContext(ctx, binary, append(serve, "--web.listen-address="+addr)...).CombinedOutput()
		out := string(b)
		cancel()
		code := -1
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			code = ee.ExitCode()
		}
		if code != 1 || !strings.Contains(out, "refusing --web.no-auth") || !strings.Contains(out, "--web.no-auth.unsafe-any-address") {
			t.Errorf("--web.listen-address=%s: exit %d, want 1 and a refusal naming --web.no-auth.unsafe-any-address:\n%s", addr, code, out)
		}
	}

	cmd := exec.Command(binary, append(serve, "--web.listen-address=0.0.0.0:0", "--web.no-auth.unsafe-any-address")...)
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	var mu sync.Mutex
	var log strings.Builder
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			mu.Lock()
			log.WriteString(sc.Text() + "\n")
			mu.Unlock()
		}
	}()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		pw.Close()
	}()
	var out string
	defer func() {
		if t.Failed() {
			t.Logf("serve's output:\n%s", out)
		}
	}()
	testwait.Until(t, 60*time.Second, "serve with --web.no-auth.unsafe-any-address to start and warn", func() bool {
		mu.Lock()
		defer mu.Unlock()
		out = log.String()
		return strings.Contains(out, "responder listening on") && strings.Contains(out, "serving WITHOUT authentication")
	})
}

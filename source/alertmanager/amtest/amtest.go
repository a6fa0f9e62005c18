// Package amtest runs the real Alertmanager binary for tests.
//
// Binary builds github.com/prometheus/alertmanager/cmd/alertmanager at the
// version pinned in tools/alertmanager/go.mod (its own module, so
// Alertmanager's dependencies stay out of responder's go.mod) and caches it
// by version under responder-tools/ beside the Go build cache; it is rebuilt
// only when missing, and parallel test processes build it once (file lock,
// then an atomic rename). Start runs it on a free loopback port with one
// webhook receiver, no clustering and a temporary storage path, and kills it
// when the test ends, printing its log if the test failed.
//
// The published module lacks the built web UI that its ui package embeds, so
// the build uses a copy of the module with a placeholder page; the API is
// unaffected.
package amtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/childproc"
	"github.com/responder-sre/responder/internal/toolbuild"
)

const (
	// Module is the Alertmanager module the binary is built from.
	Module = "github.com/prometheus/alertmanager"

	toolsDir     = "tools/alertmanager"
	binName      = "alertmanager" // cached as alertmanager-<version>
	buildTimeout = 10 * time.Minute
	readyTimeout = 30 * time.Second
)

// Binary returns the path of the Alertmanager binary at the version pinned in
// tools/alertmanager/go.mod, building it if it is not cached yet.
func Binary(t testing.TB) string {
	t.Helper()
	root, err := toolbuild.RepoRoot()
	if err != nil {
		t.Fatalf("amtest: %v", err)
	}
	tools := filepath.Join(root, toolsDir)
	version, err := toolbuild.ModuleVersion(filepath.Join(tools, "go.mod"), Module)
	if err != nil {
		t.Fatalf("amtest: %v", err)
	}
	paths, err := toolbuild.Cached(t.Context(), toolbuild.Spec{
		Name:    binName,
		Version: version,
		Files:   []string{binName},
		Build:   func(ctx context.Context, work string) error { return build(ctx, tools, version, work) },
		Timeout: buildTimeout,
		Logf:    t.Logf,
	})
	if err != nil {
		t.Fatalf("amtest: build alertmanager %s: %v", version, err)
	}
	return paths[binName]
}

// build writes the alertmanager binary at version into work, from a copy of
// the module with a placeholder web UI.
func build(ctx context.Context, tools, version, work string) error {
	src, err := toolbuild.ModuleDir(ctx, tools, Module)
	if err != nil {
		return err
	}
	// A writable copy of the module, with the placeholder UI it embeds.
	mod := filepath.Join(work, "module")
	if err := copyTree(src, mod); err != nil {
		return fmt.Errorf("copy module: %w", err)
	}
	dist := filepath.Join(mod, "ui", "app", "dist")
	if _, err := os.Stat(dist); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dist, 0o755); err != nil {
			return err
		}
		page := []byte("<!doctype html><title>Alertmanager</title><p>Web UI not built (responder test binary).</p>\n")
		if err := os.WriteFile(filepath.Join(dist, "index.html"), page, 0o644); err != nil {
			return err
		}
	}
	gomod, err := os.ReadFile(filepath.Join(tools, "go.mod"))
	if err != nil {
		return err
	}
	gosum, err := os.ReadFile(filepath.Join(tools, "go.sum"))
	if err != nil {
		return err
	}
	gomod = append(gomod, fmt.Sprintf("\nreplace %s => %s\n", Module, mod)...)
	modfile := filepath.Join(work, "go.mod")
	if err := os.WriteFile(modfile, gomod, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(work, "go.sum"), gosum, 0o644); err != nil {
		return err
	}
	ldflags := "-s -w -X github.com/prometheus/common/version.Version=" + strings.TrimPrefix(version, "v")
	cmd := toolbuild.Go(ctx, tools, "build", "-modfile="+modfile, "-ldflags="+ldflags, "-o", filepath.Join(work, binName), Module+"/cmd/alertmanager")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %w\n%s", err, out)
	}
	return nil
}

// copyTree copies directories and regular files, making them writable.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		in, err := os.Open(path)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			out.Close()
			return err
		}
		return out.Close()
	})
}

// Config is the Alertmanager configuration Start writes: one route to one
// webhook receiver. Zero durations take the defaults noted.
type Config struct {
	WebhookURL     string        // receiver URL (required)
	BearerToken    string        // sent as Authorization: Bearer; none if empty
	GroupWait      time.Duration // default 100ms
	GroupInterval  time.Duration // default 1s
	RepeatInterval time.Duration // default 1h
	MaxAlerts      int           // 0: unlimited
	SendResolved   bool
}

// YAML renders c as an alertmanager.yml. All alerts form one group.
func (c Config) YAML() string {
	dur := func(d, def time.Duration) string {
		if d <= 0 {
			d = def
		}
		return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
	}
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) } // JSON strings are YAML
	var b strings.Builder
	fmt.Fprintf(&b, "route:\n  receiver: responder\n  group_wait: %s\n  group_interval: %s\n  repeat_interval: %s\n",
		dur(c.GroupWait, 100*time.Millisecond), dur(c.GroupInterval, time.Second), dur(c.RepeatInterval, time.Hour))
	fmt.Fprintf(&b, "receivers:\n  - name: responder\n    webhook_configs:\n      - url: %s\n        send_resolved: %t\n        max_alerts: %d\n",
		q(c.WebhookURL), c.SendResolved, c.MaxAlerts)
	if c.BearerToken != "" {
		fmt.Fprintf(&b, "        http_config:\n          authorization:\n            type: Bearer\n            credentials: %s\n", q(c.BearerToken))
	}
	return b.String()
}

// Instance is a running Alertmanager.
type Instance struct {
	url string
	dir string
}

// URL is the base URL of the instance's web API, e.g. http://127.0.0.1:9093.
func (i *Instance) URL() string { return i.url }

// Start runs Alertmanager with c until the test ends.
func Start(t testing.TB, c Config) *Instance {
	t.Helper()
	if c.WebhookURL == "" {
		t.Fatal("amtest: Config.WebhookURL is required")
	}
	bin := Binary(t)
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(cfgPath, []byte(c.YAML()), 0o600); err != nil {
		t.Fatalf("amtest: %v", err)
	}
	logPath := filepath.Join(dir, "alertmanager.log")
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ { // the free port may be taken before we bind it
		inst, err := start(t, bin, dir, cfgPath, logPath)
		if err == nil {
			return inst
		}
		lastErr = err
	}
	log, _ := os.ReadFile(logPath)
	t.Fatalf("amtest: alertmanager did not start: %v\n--- alertmanager.yml ---\n%s--- alertmanager log ---\n%s", lastErr, c.YAML(), log)
	return nil
}

func start(t testing.TB, bin, dir, cfgPath, logPath string) (*Instance, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin,
		"--config.file="+cfgPath,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=",
		"--log.level=debug",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = logf, logf
	proc, err := childproc.Start(cmd) // killed if the test binary dies
	if err != nil {
		return nil, err
	}
	inst := &Instance{url: "http://" + addr, dir: dir}
	if err := waitReady(inst.url, proc.Exited()); err != nil {
		proc.Kill()
		return nil, err
	}
	t.Cleanup(func() {
		proc.Kill()
		if t.Failed() {
			log, _ := os.ReadFile(logPath)
			t.Logf("--- alertmanager log (%s) ---\n%s", inst.url, log)
		}
	})
	return inst, nil
}

func waitReady(base string, exited <-chan struct{}) error {
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return errors.New("alertmanager exited during startup")
		default:
		}
		resp, err := client.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond) // polling an external process's readiness
	}
	return fmt.Errorf("not ready after %s", readyTimeout)
}

// PostableAlert is an alert as Alertmanager's POST /api/v2/alerts takes it.
// A zero StartsAt means now; an EndsAt in the past resolves the alert.
type PostableAlert struct {
	Labels       map[string]string `json:"labels"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	StartsAt     time.Time         `json:"startsAt,omitzero"`
	EndsAt       time.Time         `json:"endsAt,omitzero"`
	GeneratorURL string            `json:"generatorURL,omitempty"`
}

// PostAlerts posts alerts to the instance's API and fails the test unless it
// answers 200.
func (i *Instance) PostAlerts(t testing.TB, alerts ...PostableAlert) {
	t.Helper()
	if alerts == nil {
		alerts = []PostableAlert{}
	}
	body, err := json.Marshal(alerts)
	if err != nil {
		t.Fatalf("amtest: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, i.url+"/api/v2/alerts", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("amtest: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("amtest: post alerts: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		t.Fatalf("amtest: post alerts: %s: %s", resp.Status, msg)
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

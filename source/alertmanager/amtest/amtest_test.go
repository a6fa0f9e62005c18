package amtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/internal/toolbuild"
)

// message is the part of Alertmanager's webhook v4 payload the test checks.
type message struct {
	Version         string `json:"version"`
	Status          string `json:"status"`
	TruncatedAlerts int    `json:"truncatedAlerts"`
	Alerts          []struct {
		Status string            `json:"status"`
		Labels map[string]string `json:"labels"`
	} `json:"alerts"`
}

// sink is a webhook receiver that records what Alertmanager sends.
type sink struct {
	token string

	mu      sync.Mutex
	msgs    []message
	badAuth int
	badBody []string
}

func (s *sink) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		s.badAuth++
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var m message
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		s.badBody = append(s.badBody, err.Error())
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.msgs = append(s.msgs, m)
}

// waitFor polls until some received message satisfies ok.
func (s *sink) waitFor(t *testing.T, what string, ok func(message) bool) message {
	t.Helper()
	var found message
	testwait.UntilDetail(t, 20*time.Second, "a "+what+" notification", func() (bool, string) {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, m := range s.msgs {
			if ok(m) {
				found = m
				return true, ""
			}
		}
		return false, fmt.Sprintf("got %d messages %+v, bad auth %d, bad bodies %v", len(s.msgs), s.msgs, s.badAuth, s.badBody)
	})
	return found
}

// names returns the sorted alertnames in m whose status is status.
func names(m message, status string) string {
	var n []string
	for _, a := range m.Alerts {
		if a.Status == status {
			n = append(n, a.Labels["alertname"]+"/"+a.Labels["instance"])
		}
	}
	sort.Strings(n)
	return strings.Join(n, ",")
}

func TestAlertmanagerDeliversWithBearerAndResolves(t *testing.T) {
	s := &sink{token: "s3cret-token"}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)

	am := Start(t, Config{
		WebhookURL:    srv.URL + "/webhook/alertmanager",
		BearerToken:   s.token,
		GroupWait:     100 * time.Millisecond,
		GroupInterval: time.Second,
		MaxAlerts:     10,
		SendResolved:  true,
	})
	if !strings.HasPrefix(am.URL(), "http://127.0.0.1:") {
		t.Fatalf("URL() = %q, want a loopback URL", am.URL())
	}

	startsAt := time.Now().Add(-time.Minute).UTC().Truncate(time.Second)
	alerts := []PostableAlert{
		{Labels: map[string]string{"alertname": "KubePodCrashLooping", "instance": "a", "severity": "warning"},
			Annotations: map[string]string{"summary": "pod a crash-looping"}, StartsAt: startsAt,
			GeneratorURL: "http://prometheus.example/graph"},
		{Labels: map[string]string{"alertname": "TargetDown", "instance": "b", "severity": "critical"},
			StartsAt: startsAt},
	}
	am.PostAlerts(t, alerts...)
	want := "KubePodCrashLooping/a,TargetDown/b"
	firing := s.waitFor(t, "firing", func(m message) bool { return names(m, "firing") == want })
	if firing.Version != "4" || firing.Status != "firing" || firing.TruncatedAlerts != 0 {
		t.Errorf("firing message version=%q status=%q truncated=%d, want 4/firing/0",
			firing.Version, firing.Status, firing.TruncatedAlerts)
	}

	for i := range alerts {
		alerts[i].EndsAt = time.Now().Add(-time.Second)
	}
	am.PostAlerts(t, alerts...)
	resolved := s.waitFor(t, "resolved", func(m message) bool { return names(m, "resolved") == want })
	if resolved.Status != "resolved" {
		t.Errorf("resolved message status = %q, want resolved", resolved.Status)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.badAuth != 0 {
		t.Errorf("%d requests without the right bearer token", s.badAuth)
	}
}

// TestBinary builds (or finds) the binary and checks it is the pinned
// version. Run it alone first to build the binary outside other timeouts:
//
//	go test -run '^TestBinary$' ./source/alertmanager/amtest
func TestBinary(t *testing.T) {
	bin := Binary(t)
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		t.Fatalf("%s --version: %v\n%s", bin, err, out)
	}
	root, err := toolbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	v, err := toolbuild.ModuleVersion(filepath.Join(root, toolsDir, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	if want := "version " + strings.TrimPrefix(v, "v") + " "; !strings.Contains(string(out), want) {
		t.Fatalf("%s --version does not say %q:\n%s", bin, want, out)
	}
	if again := Binary(t); again != bin {
		t.Fatalf("second Binary = %q, want the cached %q", again, bin)
	}
}

func TestToolsModulePinsMainModuleVersion(t *testing.T) {
	root, err := toolbuild.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	mainV, err := toolbuild.ModuleVersion(filepath.Join(root, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	toolsV, err := toolbuild.ModuleVersion(filepath.Join(root, toolsDir, "go.mod"), Module)
	if err != nil {
		t.Fatal(err)
	}
	if mainV != toolsV {
		t.Fatalf("%s: go.mod requires %s, %s/go.mod requires %s: they must match", Module, mainV, toolsDir, toolsV)
	}
}

func TestConfigYAML(t *testing.T) {
	y := Config{WebhookURL: `http://127.0.0.1:1/hook`, BearerToken: `tok"en`, MaxAlerts: 5, SendResolved: true}.YAML()
	for _, want := range []string{
		"group_wait: 100ms", "group_interval: 1000ms", "repeat_interval: 3600000ms",
		`url: "http://127.0.0.1:1/hook"`, "send_resolved: true", "max_alerts: 5",
		"type: Bearer", `credentials: "tok\"en"`,
	} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
	if y := (Config{WebhookURL: "http://x"}).YAML(); strings.Contains(y, "authorization") {
		t.Errorf("no token, yet YAML has authorization:\n%s", y)
	}
}

package probe

import (
	"context"
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

func TestHumanAge(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{0, "0s"},
		{250*time.Millisecond + 7*time.Microsecond, "250ms"},
		{45*time.Second + 300*time.Millisecond, "45s"},
		{12*time.Minute + 5*time.Second, "12m5s"},
		{time.Hour, "1h"},
		{time.Hour + 12*time.Minute + 37*time.Second, "1h12m"},
		{26 * time.Hour, "1d2h"},
		{3*24*time.Hour + 4*time.Hour + 59*time.Minute, "3d4h"},
	} {
		if got := humanAge(tc.d); got != tc.want {
			t.Errorf("humanAge(%s) = %q, want %q", tc.d, got, tc.want)
		}
	}
}

// TestBackupGlob: the newest file matching the glob is the backup; its age is the value, and
// over max_age is a failure saying both ages.
func TestBackupGlob(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		name   string
		files  map[string]time.Duration // name → age
		glob   string
		maxAge string
		ok     bool
		age    time.Duration // the expected value (± a minute); 0 with no value
		reason string
	}{
		{"fresh", map[string]time.Duration{"a.dump": 3 * time.Hour, "b.dump": 10 * time.Minute}, "*.dump", "1h", true, 10 * time.Minute, ""},
		{"stale", map[string]time.Duration{"a.dump": 3 * time.Hour, "b.dump": time.Hour + 12*time.Minute + 10*time.Second}, "*.dump", "1h", false,
			time.Hour + 12*time.Minute, "b.dump is 1h12m old, max 1h"},
		{"other files do not count", map[string]time.Duration{"a.dump": 2 * time.Hour, "notes.txt": time.Minute}, "*.dump", "1h", false, 2 * time.Hour, "a.dump is 2h old, max 1h"},
		{"in subdirectories", map[string]time.Duration{"2026-11-21/base.tar": 30 * time.Hour, "2026-11-22/base.tar": 5 * time.Hour}, "*/base.tar", "1d", true, 5 * time.Hour, ""},
		{"no match", map[string]time.Duration{"a.tmp": time.Minute}, "*.dump", "1h", false, 0, "no backup: nothing matches"},
		{"empty directory", nil, "*", "1h", false, 0, "no backup: nothing matches"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			for name, age := range tc.files {
				p := filepath.Join(dir, name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, []byte("backup"), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
					t.Fatal(err)
				}
			}
			glob := filepath.Join(dir, tc.glob)
			r := newRunner(t, parseProbes(t, fmt.Sprintf("  - {name: b, backup: {max_age: %s, glob: %q}}\n", tc.maxAge, glob)), Options{})
			res := runOnce(t, r, "b")
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("success %v reason %q; want %v, %q", res.Success, res.Reason, tc.ok, tc.reason)
			}
			switch {
			case tc.age == 0 && !isNaN(res.Value):
				t.Errorf("value = %v, want none (NaN)", res.Value)
			case tc.age != 0 && (res.Value < tc.age.Seconds()-60 || res.Value > tc.age.Seconds()+60):
				t.Errorf("value = %v, want the age %v in seconds", res.Value, tc.age.Seconds())
			}
			if res.Labels[LabelInstance] != glob || res.Labels[LabelKind] != "backup" {
				t.Errorf("labels = %v, want instance = the glob, probe_kind backup", res.Labels)
			}
			if !tc.ok && (len(res.Alerts) != 1 || res.Alerts[0].Annotations[SummaryAnnotation] != res.Reason) {
				t.Errorf("alerts = %+v, want one firing alert whose summary is the reason", res.Alerts)
			}
		})
	}
}

// TestBackupURL: the Last-Modified of an HTTP object, by HEAD or, where HEAD is not allowed, by
// GET; a missing or unparsable header, or a status that is not 2xx, is a failure saying so.
func TestBackupURL(t *testing.T) {
	now := time.Now()
	fresh := now.Add(-20 * time.Minute).UTC().Format(http.TimeFormat)
	stale := now.Add(-27 * time.Hour).UTC().Format(http.TimeFormat)
	var gets, heads atomic.Int32
	mux := http.NewServeMux()
	objects := map[string]struct {
		headAllowed  bool
		lastModified string
		status       int
	}{
		"/fresh":    {true, fresh, 200},
		"/stale":    {true, stale, 200},
		"/no-head":  {false, fresh, 200},
		"/missing":  {true, "", 200},
		"/garbage":  {true, "yesterday", 200},
		"/gone":     {true, fresh, 404},
		"/rfc850":   {true, now.Add(-time.Hour).UTC().Format("Monday, 02-Jan-06 15:04:05 GMT"), 200},
		"/redirect": {true, "", http.StatusFound},
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			w.WriteHeader(401)
			return
		}
		o, ok := objects[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		switch r.Method {
		case http.MethodHead:
			heads.Add(1)
			if !o.headAllowed {
				w.Header().Set("Allow", "GET")
				w.WriteHeader(http.StatusMethodNotAllowed)
				return
			}
		case http.MethodGet:
			gets.Add(1)
		}
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, "/fresh?sig=SECRET-q", http.StatusFound)
			return
		}
		if o.lastModified != "" {
			w.Header().Set("Last-Modified", o.lastModified)
		}
		w.WriteHeader(o.status)
		if r.Method == http.MethodGet {
			fmt.Fprint(w, strings.Repeat("backup bytes ", 1<<16)) // a large object: never read
		}
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	var items strings.Builder
	for path := range objects {
		fmt.Fprintf(&items, "  - {name: %q, backup: {max_age: 1d, url: %q, headers: {Authorization: Bearer tok}, tls: {ca_file: %q}}}\n",
			strings.TrimPrefix(path, "/"), srv.URL+path+"?X-Amz-Signature=SECRET-q", caFile)
	}
	fmt.Fprintf(&items, "  - {name: untrusted, backup: {max_age: 1d, url: %q, headers: {Authorization: Bearer tok}}}\n", srv.URL+"/fresh")
	fmt.Fprintf(&items, "  - {name: noauth, backup: {max_age: 1d, url: %q, tls: {ca_file: %q}}}\n", srv.URL+"/fresh", caFile)
	r := newRunner(t, parseProbes(t, items.String()), Options{})

	for _, tc := range []struct {
		probe       string
		ok          bool
		age         time.Duration // ± a minute; 0: no value
		reason      string
		heads, gets int32
	}{
		{"fresh", true, 20 * time.Minute, "", 1, 0},
		{"stale", false, 27 * time.Hour, "newest backup is 1d3h old, max 1d", 1, 0},
		{"no-head", true, 20 * time.Minute, "", 1, 1},
		{"missing", false, 0, "HEAD " + srv.URL + "/missing: no Last-Modified header", 1, 0},
		{"garbage", false, 0, `unparsable Last-Modified "yesterday"`, 1, 0},
		{"gone", false, 0, "HEAD " + srv.URL + "/gone: status 404", 1, 0},
		{"rfc850", true, time.Hour, "", 1, 0},
		{"redirect", true, 20 * time.Minute, "", 2, 0},
		{"untrusted", false, 0, "certificate signed by unknown authority", 0, 0},
		{"noauth", false, 0, "status 401", 0, 0},
	} {
		t.Run(tc.probe, func(t *testing.T) {
			heads.Store(0)
			gets.Store(0)
			res := runOnce(t, r, tc.probe)
			if res.Success != tc.ok || !strings.Contains(res.Reason, tc.reason) {
				t.Errorf("success %v reason %q; want %v, %q", res.Success, res.Reason, tc.ok, tc.reason)
			}
			switch {
			case tc.age == 0 && !isNaN(res.Value):
				t.Errorf("value = %v, want none (NaN)", res.Value)
			case tc.age != 0 && (res.Value < tc.age.Seconds()-60 || res.Value > tc.age.Seconds()+60):
				t.Errorf("value = %v, want the age %v in seconds", res.Value, tc.age.Seconds())
			}
			if h, g := heads.Load(), gets.Load(); h != tc.heads || g != tc.gets {
				t.Errorf("HEAD %d, GET %d requests; want %d, %d", h, g, tc.heads, tc.gets)
			}
			if strings.Contains(res.Reason, "SECRET") || strings.Contains(res.Labels[LabelInstance], "SECRET") {
				t.Errorf("the URL's query leaks: reason %q, instance %q", res.Reason, res.Labels[LabelInstance])
			}
		})
	}
}

// archivingServer starts a dedicated PostgreSQL with archive_mode=on and an archive_command that
// copies each WAL segment into a directory, and returns its URL and that directory (which the
// command creates on its first segment).
func archivingServer(t *testing.T) (string, string) {
	t.Helper()
	srv := pgtest.StartServer(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var dataDir string
	if err := conn.QueryRow(ctx, "SHOW data_directory").Scan(&dataDir); err != nil {
		t.Fatal(err)
	}
	// Beside the data directory, in the server's own temporary directory: the server's user
	// (postgres when the tests run as root) may write there, and it goes when the server does.
	archive := filepath.Join(filepath.Dir(dataDir), "wal-archive")
	cmd := fmt.Sprintf("mkdir -p %[1]s && test ! -f %[1]s/%%f && cp %%p %[1]s/%%f", archive)
	for _, sql := range []string{
		"ALTER SYSTEM SET archive_mode = 'on'",
		"ALTER SYSTEM SET archive_command = '" + strings.ReplaceAll(cmd, "'", "''") + "'",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	_ = conn.Close(ctx)
	srv.Stop(t) // archive_mode takes a restart
	srv.Start(t)
	return srv.URL("postgres"), archive
}

// TestBackupPostgresArchive: a real PostgreSQL archiving its WAL to a directory. Before the first
// archived segment the sql source says "no backup yet" and the glob matches nothing; after a
// write and pg_switch_wal() both see a fresh backup; with a tiny max_age the probe fires, and
// its alert says the age and the maximum.
func TestBackupPostgresArchive(t *testing.T) {
	t.Parallel()
	dsn, archive := archivingServer(t)
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	// An unprivileged role reads pg_stat_archiver (the default query) too.
	if _, err := conn.Exec(ctx, "CREATE ROLE monitor LOGIN"); err != nil {
		t.Fatal(err)
	}
	monitorDSN := strings.Replace(dsn, "//postgres@", "//monitor@", 1)
	rec := &recorder{}
	r := newRunner(t, parseProbes(t, fmt.Sprintf(`
  - {name: archiver, backup: {max_age: 1h, sql: {dsn: %[1]q}}}
  - {name: archive-dir, backup: {max_age: 1h, glob: %[2]q}}
  - {name: tiny, backup: {max_age: 1s, sql: {dsn: %[1]q}}}
  - {name: custom, backup: {max_age: 1h, sql: {dsn: %[1]q, query: "SELECT last_archived_time FROM pg_stat_archiver WHERE archived_count > 0"}}}
  - {name: writes, backup: {max_age: 1h, sql: {dsn: %[1]q, query: "INSERT INTO t VALUES (1) RETURNING now()"}}}
  - {name: monitor, backup: {max_age: 1h, sql: {dsn: %[3]q}}}
`, dsn, filepath.Join(archive, "0*"), monitorDSN)), Options{Publish: rec.publish})

	for _, tc := range []struct{ probe, reason string }{
		{"archiver", "no backup yet"},
		{"archive-dir", "no backup: nothing matches " + archive},
		{"custom", "the backup query returned no row"},
	} {
		if res := runOnce(t, r, tc.probe); res.Success || !strings.Contains(res.Reason, tc.reason) || !isNaN(res.Value) {
			t.Errorf("%s before any archive: %+v, want a failure %q without value", tc.probe, res, tc.reason)
		}
	}

	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int); INSERT INTO t SELECT generate_series(1, 1000)"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_switch_wal()"); err != nil {
		t.Fatal(err)
	}
	for _, probe := range []string{"archiver", "archive-dir", "custom", "monitor"} {
		testwait.UntilDetail(t, 30*time.Second, probe+" sees the archived segment", func() (bool, string) {
			res := runOnce(t, r, probe)
			return res.Success && res.Value >= 0 && res.Value < 60 && !res.Firing, fmt.Sprintf("%+v", res)
		})
	}
	segs, _ := filepath.Glob(filepath.Join(archive, "0*"))
	if len(segs) == 0 {
		t.Fatalf("no WAL segment in %s", archive)
	}

	// max_age 1s: once the segment is older than that, the probe fires with the age as value.
	var fired Result
	testwait.UntilDetail(t, 30*time.Second, "the tiny max_age fires", func() (bool, string) {
		fired = runOnce(t, r, "tiny")
		return !fired.Success && fired.Firing, fmt.Sprintf("%+v", fired)
	})
	if !strings.HasPrefix(fired.Reason, "newest backup is ") || !strings.HasSuffix(fired.Reason, " old, max 1s") || fired.Value < 1 || fired.Value > 120 {
		t.Errorf("tiny: reason %q value %v; want \"newest backup is ... old, max 1s\" and the age", fired.Reason, fired.Value)
	}
	if len(fired.Alerts) != 1 || fired.Alerts[0].Value == nil || *fired.Alerts[0].Value != fired.Value ||
		fired.Alerts[0].Annotations[SummaryAnnotation] != fired.Reason || fired.Alerts[0].Labels[LabelKind] != "backup" {
		t.Errorf("tiny alerts = %+v, want one firing alert with the age and the reason", fired.Alerts)
	}
	if all := rec.all(); len(all) == 0 || all[len(all)-1].Labels["alertname"] != "tiny" {
		t.Errorf("published = %+v, want the tiny probe's alert", all)
	}

	// The query runs read-only: a probe cannot write.
	if res := runOnce(t, r, "writes"); res.Success || !strings.Contains(res.Reason, "read-only transaction") {
		t.Errorf("writes: %+v, want a read-only failure", res)
	}
}

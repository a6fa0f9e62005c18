package app_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/responder-sre/responder/internal/testwait"
	"github.com/responder-sre/responder/store/pgtest"
)

// drillRules: every crash-looping pod's restart hook needs an approval.
func drillRules(s *sink) string {
	return fmt.Sprintf(`
rules:
  - name: careful
    when: alert.name == "KubePodCrashLooping"
    actions:
      - handler: http.request
        approval: required
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
`, s.HostPort())
}

// drillPayload is payload with the responder_drill label of run on every alert ("" for none).
func drillPayload(t *testing.T, run string, starts time.Time, pods ...string) []byte {
	t.Helper()
	var p map[string]any
	must(t, json.Unmarshal(payload("firing", starts, pods...), &p))
	if run != "" {
		for _, a := range p["alerts"].([]any) {
			a.(map[string]any)["labels"].(map[string]any)["responder_drill"] = run
		}
	}
	b, err := json.Marshal(p)
	must(t, err)
	return b
}

// drillRun is the JSON of a drill run.
type drillRun struct {
	ID             int64           `json:"id"`
	RunID          string          `json:"run_id"`
	Name           string          `json:"name"`
	Trigger        string          `json:"trigger"`
	Actor          string          `json:"actor"`
	Probes         []string        `json:"probes"`
	PageReal       bool            `json:"page_real"`
	RTOSeconds     float64         `json:"rto_seconds"`
	InjectedAt     *time.Time      `json:"injected_at"`
	FinishedAt     *time.Time      `json:"finished_at"`
	Passed         *bool           `json:"passed"`
	Failure        string          `json:"failure"`
	RecoverSeconds *float64        `json:"recover_seconds"`
	Report         json.RawMessage `json:"report"`
}

func (f *fixture) drillJSON(method, path, token, body string, wantCode int, into any) {
	f.t.Helper()
	var b []byte
	if body != "" {
		b = []byte(body)
	}
	code, resp := f.do(method, path, token, b)
	if code != wantCode {
		f.t.Fatalf("%s %s: %d %s, want %d", method, path, code, resp, wantCode)
	}
	if into != nil {
		must(f.t, json.Unmarshal(resp, into))
	}
}

// TestDrillThroughTheAPI: a drill run is started by a named token; its alert's incident and
// action are listed by ?drill=; the run approves its own action as drill:<name> (via drill), and
// may not approve an action that is not the run's (409); it finishes with its report, which the
// run keeps; the metrics and the console say how it went; a finished run approves nothing more.
func TestDrillThroughTheAPI(t *testing.T) {
	o := consoleOpts(t)
	o.api, o.files, o.rules = namedTokens.api, namedTokens.files, drillRules
	f := startApp(t, o)

	// Bad starts.
	for _, body := range []string{"", `{"name": ""}`, `{"name": "a b"}`, `{"name": "x", "rto_seconds": -1}`, `{"name": "x", "nope": 1}`} {
		if code, b := f.do(http.MethodPost, "/api/v1/drills", opsToken, []byte(body)); code != http.StatusBadRequest {
			t.Errorf("start %q: %d %s", body, code, b)
		}
	}
	if code, _ := f.do(http.MethodPost, "/api/v1/drills", ciToken, []byte(`{"name": "x"}`)); code != http.StatusForbidden {
		t.Errorf("start with a read token: %d", code)
	}

	var run drillRun
	f.drillJSON(http.MethodPost, "/api/v1/drills", opsToken, `{"name": "api-down", "probes": ["pg"], "rto_seconds": 300}`, http.StatusCreated, &run)
	if !regexp.MustCompile(`^api-down-\d{8}T\d{6}Z-[0-9a-f]{4}$`).MatchString(run.RunID) || run.Trigger != "cli" || run.Actor != "ops" ||
		run.RTOSeconds != 300 || len(run.Probes) != 1 || run.Passed != nil || run.FinishedAt != nil {
		t.Fatalf("started run = %+v", run)
	}

	starts := time.Now().UTC().Truncate(time.Second)
	if code := f.post(drillPayload(t, run.RunID, starts, "drill-1")); code != 200 {
		t.Fatalf("post drill alert: %d", code)
	}
	if code := f.post(drillPayload(t, "", starts, "real-1")); code != 200 {
		t.Fatalf("post real alert: %d", code)
	}
	testwait.Until(t, 20*time.Second, "2 actions awaiting approval", func() bool {
		return countState(f.actions(""), "awaiting_approval") == 2
	})
	drillActs := f.actions("?drill=" + run.RunID)
	if len(drillActs) != 1 || drillActs[0]["drill"] != run.RunID {
		t.Fatalf("actions of the drill = %v", drillActs)
	}
	var incs struct{ Items []map[string]any }
	f.drillJSON(http.MethodGet, "/api/v1/incidents?drill="+run.RunID, ciToken, "", http.StatusOK, &incs)
	if len(incs.Items) != 1 || incs.Items[0]["drill"] != run.RunID || incs.Items[0]["received_at"] == nil {
		t.Fatalf("incidents of the drill = %v", incs.Items)
	}
	var realID int
	for _, a := range f.actions("") {
		if a["drill"] == "" {
			realID = int(a["id"].(float64))
		}
	}
	drillID := int(drillActs[0]["id"].(float64))

	approve := func(action int) string { return fmt.Sprintf("/api/v1/drills/%d/approve/%d", run.ID, action) }
	// Not the run's action: 409, and it still awaits a human.
	f.drillJSON(http.MethodPost, approve(realID), opsToken, "", http.StatusConflict, nil)
	if code, _ := f.do(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/approve/%d", run.ID+100, drillID), opsToken, nil); code != http.StatusNotFound {
		t.Errorf("unknown run: %d", code)
	}
	if code, _ := f.do(http.MethodPost, approve(999999), opsToken, nil); code != http.StatusNotFound {
		t.Errorf("unknown action: %d", code)
	}
	var dec struct {
		Action map[string]any `json:"action"`
		Replay bool           `json:"replay"`
	}
	f.drillJSON(http.MethodPost, approve(drillID), opsToken, "", http.StatusOK, &dec)
	if dec.Replay || dec.Action["approved_by"] != "drill:api-down" {
		t.Fatalf("drill approval = %+v", dec)
	}
	f.drillJSON(http.MethodPost, approve(drillID), opsToken, "", http.StatusOK, &dec)
	if !dec.Replay {
		t.Errorf("second drill approval is not a replay: %+v", dec)
	}
	if rows := f.auditOf("approval", drillID); len(rows) != 1 || rows[0].Actor != "drill:api-down" || rows[0].Detail["via"] != "drill" {
		t.Errorf("approval audit = %+v", rows)
	}
	if rows := f.auditOf("drill", drillID); len(rows) != 1 || rows[0].Actor != "ops" || rows[0].Reason != "approved" {
		t.Errorf("drill approval audit = %+v", rows)
	}
	testwait.Until(t, 20*time.Second, "the drill's action to succeed", func() bool {
		return f.actions("?drill=" + run.RunID)[0]["state"] == "succeeded"
	})
	if n := countState(f.actions(""), "awaiting_approval"); n != 1 {
		t.Errorf("the real action was decided: %d awaiting", n)
	}

	// Finish with the report.
	injected := starts.Add(-time.Second).Format(time.RFC3339)
	report := fmt.Sprintf(`{"name":"api-down","run_id":%q,"passed":true,"rto_seconds":300,"recover_seconds":12.5,"steps":[],"failure":"","injected_at":%q}`,
		run.RunID, injected)
	if code, _ := f.do(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run.ID), opsToken, []byte(`[1]`)); code != http.StatusBadRequest {
		t.Errorf("finish with a list: %d", code)
	}
	var fin drillRun
	f.drillJSON(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run.ID), opsToken, report, http.StatusOK, &fin)
	if fin.Passed == nil || !*fin.Passed || fin.RecoverSeconds == nil || *fin.RecoverSeconds != 12.5 || fin.FinishedAt == nil ||
		fin.InjectedAt == nil || fin.InjectedAt.Format(time.RFC3339) != injected {
		t.Fatalf("finished run = %+v", fin)
	}
	// Finishing again changes nothing.
	f.drillJSON(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run.ID), opsToken, `{"passed":false,"failure":"again"}`, http.StatusOK, &fin)
	if !*fin.Passed || fin.Failure != "" {
		t.Errorf("second finish changed the run: %+v", fin)
	}
	// A finished run approves nothing.
	f.drillJSON(http.MethodPost, approve(drillID), opsToken, "", http.StatusConflict, nil)

	var got drillRun
	f.drillJSON(http.MethodGet, fmt.Sprintf("/api/v1/drills/%d", run.ID), ciToken, "", http.StatusOK, &got)
	var rep map[string]any
	must(t, json.Unmarshal(got.Report, &rep))
	if rep["run_id"] != run.RunID || rep["recover_seconds"] != 12.5 {
		t.Errorf("stored report = %s", got.Report)
	}
	var l struct {
		Items      []map[string]any `json:"items"`
		NextCursor *string          `json:"next_cursor"`
	}
	f.drillJSON(http.MethodGet, "/api/v1/drills?name=api-down", ciToken, "", http.StatusOK, &l)
	if len(l.Items) != 1 || l.NextCursor == nil || l.Items[0]["run_id"] != run.RunID || l.Items[0]["report"] != nil {
		t.Errorf("list = %+v", l)
	}
	f.drillJSON(http.MethodGet, "/api/v1/drills?name=other", ciToken, "", http.StatusOK, &l)
	if len(l.Items) != 0 {
		t.Errorf("list of another drill = %+v", l.Items)
	}

	if v := metricValue(t, f, "responder_drill_success"); v != 1 {
		t.Errorf("responder_drill_success = %v", v)
	}
	if v := metricValue(t, f, "responder_drill_recover_seconds"); v != 12.5 {
		t.Errorf("responder_drill_recover_seconds = %v", v)
	}
	if v := metricValue(t, f, "responder_drill_last_run_timestamp_seconds"); v != float64(fin.FinishedAt.UnixNano())/1e9 {
		t.Errorf("responder_drill_last_run_timestamp_seconds = %v, want %v", v, fin.FinishedAt)
	}

	// The console: the run on the drills page, its incident marked.
	b := newBrowser(t, f, readUser, readPassword)
	if code, page := b.get("/ui/drills"); code != 200 || !strings.Contains(page, `<span class="badge st-passed">passed</span> <strong>api-down</strong>`) ||
		!strings.Contains(page, run.RunID) || !strings.Contains(page, "recovered in") {
		t.Errorf("drills page: %d\n%s", code, page)
	}
	if code, page := b.get("/ui/?drill=" + run.RunID); code != 200 || strings.Count(page, `<span class="badge drill"`) != 1 {
		t.Errorf("incidents of the drill: %d\n%s", code, page)
	}

	// A second run fails without recovering: success 0, recover unknown.
	var run2 drillRun
	f.drillJSON(http.MethodPost, "/api/v1/drills", opsToken, `{"name": "api-down", "rto_seconds": 1}`, http.StatusCreated, &run2)
	f.drillJSON(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run2.ID), opsToken, `{"passed":false,"failure":"paused","recover_seconds":0}`, http.StatusOK, &fin)
	if fin.RecoverSeconds != nil || fin.InjectedAt != nil || fin.Failure != "paused" {
		t.Errorf("failed run = %+v", fin)
	}
	if v := metricValue(t, f, "responder_drill_success"); v != 0 {
		t.Errorf("responder_drill_success after a failure = %v", v)
	}
}

// TestDrillMetricsFromTheStore: a replica that did not record a run serves its metrics too
// (read from the store when it starts, and in the background).
func TestDrillMetricsFromTheStore(t *testing.T) {
	db := pgtest.NewDatabase(t)
	f := startApp(t, fixtureOpts{dbURL: db})
	var run drillRun
	f.drillJSON(http.MethodPost, "/api/v1/drills", adminToken, `{"name": "nightly"}`, http.StatusCreated, &run)
	if run.Actor != "api" {
		t.Errorf("actor of the shared admin token = %q", run.Actor)
	}
	f.drillJSON(http.MethodPost, fmt.Sprintf("/api/v1/drills/%d/finish", run.ID), adminToken, `{"passed":true,"recover_seconds":3}`, http.StatusOK, nil)
	f.stop()
	g := startApp(t, fixtureOpts{dbURL: db})
	if v := metricValue(t, g, "responder_drill_recover_seconds"); v != 3 {
		t.Errorf("the other replica's responder_drill_recover_seconds = %v", v)
	}
}

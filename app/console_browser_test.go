package app_test

// The web console's browser tests (issue 16): Debian's Chromium, headless, through
// internal/browsertest, against the real stack (the app on PostgreSQL and JetStream, the sink as
// the downstream). Each page fails its test when it closes if it logged a console error, an
// uncaught exception or a Content-Security-Policy violation that the test did not take (read
// through the DevTools protocol), so every page visited here is checked for "console.error stays
// empty" without a line of its own.

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/responder-sre/responder/internal/browsertest"
	"github.com/responder-sre/responder/internal/testwait"
)

// update makes TestBrowserApproveRunsTheAction write the README's screenshot of the incident page.
var update = flag.Bool("update", false, "write docs/console-incident.png, the README's screenshot of the incident page")

// readmeScreenshot is the README's screenshot of the incident page, relative to this package.
const readmeScreenshot = "../docs/console-incident.png"

// phoneWidth and phoneHeight are a phone's viewport in CSS pixels.
const phoneWidth, phoneHeight = 390, 844

// sharedBrowser is the test binary's Chromium once a test asked for it; TestMain closes it.
var sharedBrowser atomic.Pointer[browsertest.Browser]

// startBrowser returns the test binary's Chromium (browsertest.Start), remembering it for
// closeBrowser.
func startBrowser(t *testing.T) *browsertest.Browser {
	t.Helper()
	b := browsertest.Start(t)
	sharedBrowser.Store(b)
	return b
}

// closeBrowser closes the shared Chromium, if a test started it, and removes its profile.
func closeBrowser() {
	if b := sharedBrowser.Load(); b != nil {
		b.Close()
	}
}

// approvalRules is the default rule with approval required: its http.request to the sink waits
// for a human. The Authorization header is a secret the page must hide.
func approvalRules(s *sink) string {
	return fmt.Sprintf(`
rules:
  - name: restart-crashlooping-pod
    when: alert.name == "KubePodCrashLooping" && alert.status == "firing"
    actions:
      - handler: http.request
        approval: required
        params:
          url: "http://%s/hooks/restart/{{ alert.labels.pod }}"
          headers: {Authorization: "Bearer s3cret-token"}
          body: '{{ toJSON({pod: alert.labels.pod, namespace: alert.labels.namespace}) }}'
`, s.HostPort())
}

// alertBody is an Alertmanager v4 webhook body with one firing alert.
func alertBody(starts time.Time, labels, annotations map[string]string) []byte {
	b, _ := json.Marshal(map[string]any{"version": "4", "groupKey": "{}", "status": "firing", "receiver": "responder",
		"groupLabels": map[string]string{}, "commonLabels": map[string]string{}, "commonAnnotations": map[string]string{},
		"externalURL": "http://alertmanager:9093", "truncatedAlerts": 0,
		"alerts": []map[string]any{{"status": "firing", "startsAt": starts, "labels": labels, "annotations": annotations}}})
	return b
}

// crashLoopAlert is the alert of the README's screenshot: a crash-looping pod with a runbook and
// a dashboard.
func crashLoopAlert() []byte {
	return alertBody(time.Now().UTC().Add(-3*time.Minute).Truncate(time.Second),
		map[string]string{"alertname": "KubePodCrashLooping", "namespace": "shop", "pod": "checkout-7d9f-x2k",
			"container": "checkout", "severity": "critical", "team": "payments"},
		map[string]string{"summary": "Pod shop/checkout-7d9f-x2k is crash looping (5 restarts in 10m)",
			"runbook_url":   "https://runbooks.example.com/kube/KubePodCrashLooping",
			"dashboard_url": "https://grafana.example.com/d/pods?var-pod=checkout-7d9f-x2k"})
}

// awaitingAction posts body and returns the action it plans, once it awaits approval, and its
// incident.
func awaitingAction(t *testing.T, f *fixture, body []byte) (id, incID int) {
	t.Helper()
	if code := f.post(body); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 20*time.Second, "an action awaiting approval", func() bool {
		return countState(f.actions(""), "awaiting_approval") == 1
	})
	act := f.actions("")[0]
	return int(act["id"].(float64)), int(act["incident_id"].(float64))
}

// actionState is the action's state through the API.
func actionState(t *testing.T, f *fixture, id int) string {
	t.Helper()
	code, b := f.do(http.MethodGet, fmt.Sprintf("/api/v1/actions/%d", id), readToken, nil)
	if code != 200 {
		t.Fatalf("GET action %d: %d %s", id, code, b)
	}
	var a map[string]any
	must(t, json.Unmarshal(b, &a))
	return fmt.Sprint(a["state"])
}

// eval evaluates a JavaScript expression in the page, through the DevTools protocol (not the
// page's own scripts: the console has none), within the page's deadline.
func eval[T any](t *testing.T, p *browsertest.Page, expr string) T {
	t.Helper()
	ctx, cancel := context.WithTimeout(p.Context(), browsertest.DefaultTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// ddText is the rendered text of the <dd> after the <dt> named term in the list sel (a label's or
// an annotation's value), "" when there is none.
func ddText(t *testing.T, p *browsertest.Page, sel, term string) string {
	t.Helper()
	q, _ := json.Marshal(sel + " dt")
	k, _ := json.Marshal(term)
	return eval[string](t, p, fmt.Sprintf(
		`(() => { const dt = [...document.querySelectorAll(%s)].find(e => e.textContent === %s);
		          return dt && dt.nextElementSibling ? dt.nextElementSibling.innerText : ""; })()`, q, k))
}

// overflow is the page's scroll width, its viewport's width, and the elements that reach past the
// viewport's right edge or overflow their own box (the innermost ones, for a failure's message).
func overflow(t *testing.T, p *browsertest.Page) (scrollWidth, innerWidth int, wide []string) {
	t.Helper()
	type widths struct {
		Scroll, Inner int
		Wide          []string
	}
	r := eval[widths](t, p, `(() => {
		// An element past the right edge, or whose content (a long word) overflows it unclipped.
		const w = window.innerWidth, past = [...document.body.querySelectorAll("*")]
			.filter(e => e.getBoundingClientRect().right > w + 0.5 ||
				(e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible"));
		return {Scroll: document.scrollingElement.scrollWidth, Inner: w,
			Wide: past.filter(e => !past.some(c => c !== e && e.contains(c)))
				.map(e => e.tagName.toLowerCase() + (e.id ? "#" + e.id : "") +
					(e.className ? "." + String(e.className).split(" ").join(".") : "") +
					" (right " + Math.round(e.getBoundingClientRect().right) + "px): " +
					e.outerHTML.slice(0, 120))};
	})()`)
	return r.Scroll, r.Inner, r.Wide
}

// submitForm builds a form in the page (through the DevTools protocol) posting fields to action,
// submits it as a click would, and returns the HTTP status of the page it loads. It is a forgery
// from the user's own tab: the browser sends the user's credentials and cookies with it.
func submitForm(t *testing.T, p *browsertest.Page, action string, fields map[string]string) int64 {
	t.Helper()
	a, _ := json.Marshal(action)
	fs, _ := json.Marshal(fields)
	js := fmt.Sprintf(`(() => { const f = document.createElement("form"); f.method = "post"; f.action = %s;
		for (const [k, v] of Object.entries(%s)) { const i = document.createElement("input");
		  i.type = "hidden"; i.name = k; i.value = v; f.append(i); }
		document.body.append(f); f.submit(); })()`, a, fs)
	ctx, cancel := context.WithTimeout(p.Context(), browsertest.DefaultTimeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, runtime.Evaluate, runtime.EvaluateParams{Expression: js})
		return err
	}))
	if err != nil {
		t.Fatalf("submit a form to %s: %v", action, err)
	}
	if resp == nil {
		t.Fatalf("submit a form to %s: no response", action)
	}
	return resp.Status
}

// dialogs records the JavaScript dialogs (alert, confirm, prompt) a page opens.
type dialogs struct {
	mu     sync.Mutex
	opened []string
}

// watch records the dialogs p opens from now on; it runs in the tab's read loop, so a dialog
// opened before the answer to a later command is recorded by then.
func (d *dialogs) watch(t *testing.T, p *browsertest.Page) {
	t.Helper()
	must(t, chromedp.Listen(p.Context(), func(ev any) {
		if e, ok := ev.(*page.EventJavascriptDialogOpening); ok {
			d.mu.Lock()
			d.opened = append(d.opened, string(e.Type)+": "+e.Message)
			d.mu.Unlock()
		}
	}))
}

func (d *dialogs) list() []string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]string(nil), d.opened...)
}

// TestBrowserApproveRunsTheAction: alice (admin, approver) logs in, sees the incident of the fired
// alert in the list, opens it (the README's screenshot, and a phone-width page without horizontal
// overflow), clicks Approve and sees the action run: the sink receives the call, and the page,
// reloaded, shows the action succeeded and approved by her.
func TestBrowserApproveRunsTheAction(t *testing.T) {
	o := consoleOpts(t)
	o.rules = approvalRules
	f := startApp(t, o)
	id, incID := awaitingAction(t, f, crashLoopAlert())
	b := startBrowser(t)
	alice := browsertest.PageOptions{User: consoleUser, Password: consolePassword}

	p := b.Page(t, f.base+"/ui/", alice)
	if got := p.Status(); got != http.StatusOK {
		t.Fatalf("GET /ui/: %d", got)
	}
	if got, want := p.Text("#who"), "alice · admin · approver"; got != want {
		t.Errorf("#who %q, want %q", got, want)
	}
	if got, want := p.Text("#awaiting-count"), "1 awaiting approval"; got != want {
		t.Errorf("#awaiting-count %q, want %q", got, want)
	}
	incPath := fmt.Sprintf("/ui/incidents/%d", incID)
	if got := p.ClickNavigate(fmt.Sprintf(`#incident-%d a[href=%q]`, incID, incPath)); got != http.StatusOK {
		t.Fatalf("the incident's link: %d", got)
	}
	if got := p.URL(); got != f.base+incPath {
		t.Fatalf("the link led to %s, want %s", got, f.base+incPath)
	}
	action := fmt.Sprintf("#action-%d", id)
	if got := p.Text(action + " .badge"); got != "awaiting_approval" {
		t.Errorf("the action's state %q, want awaiting_approval", got)
	}
	if got := p.Text(action + " .ttl"); !strings.HasPrefix(got, "Expires in ") {
		t.Errorf("the action's time left %q, want \"Expires in …\"", got)
	}
	if got := p.Text(action + " .params"); !strings.Contains(got, `"<secret>"`) || strings.Contains(got, "s3cret-token") {
		t.Errorf("the action's params do not hide the secret:\n%s", got)
	}
	for _, sel := range []string{"#runbook", "#dashboard", fmt.Sprintf("#approve-%d-submit", id), fmt.Sprintf("#deny-%d-submit", id)} {
		if n := p.Count(sel); n != 1 {
			t.Errorf("%s: %d on the page, want 1", sel, n)
		}
	}
	shot := filepath.Join(t.TempDir(), "console-incident.png")
	if *update {
		shot = readmeScreenshot
	}
	p.Screenshot(shot)
	t.Logf("the incident page's screenshot: %s", shot)

	// The same page on a phone: nothing wider than the screen, Approve within reach.
	phone := b.Page(t, f.base+incPath, browsertest.PageOptions{User: consoleUser, Password: consolePassword,
		Width: phoneWidth, Height: phoneHeight})
	phone.WaitVisible(fmt.Sprintf("#approve-%d-submit", id))
	if sw, iw, wide := overflow(t, phone); iw != phoneWidth || sw > iw {
		t.Errorf("on a phone the incident page is %d px wide in a %d px viewport (want %d, no horizontal overflow); past the edge:\n%s",
			sw, iw, phoneWidth, strings.Join(wide, "\n"))
	}

	if got := p.ClickNavigate(fmt.Sprintf("#approve-%d-submit", id)); got != http.StatusOK {
		t.Fatalf("Approve: %d", got)
	}
	if got, want := p.Text("#flash"), fmt.Sprintf("Action %d approved: it runs now.", id); got != want {
		t.Errorf("#flash %q, want %q", got, want)
	}
	if got := p.URL(); got != f.base+incPath {
		t.Errorf("after Approve the browser is on %s, want back on %s", got, f.base+incPath)
	}
	testwait.Until(t, 10*time.Second, "the approved action to call the sink", func() bool { return len(f.sink.Calls()) == 1 })
	if c := f.sink.Calls()[0]; c.Path != "/hooks/restart/checkout-7d9f-x2k" || c.Body["pod"] != "checkout-7d9f-x2k" {
		t.Errorf("the sink's call: %+v", c)
	}
	testwait.Until(t, 10*time.Second, "the action to succeed", func() bool { return actionState(t, f, id) == "succeeded" })

	if got := p.Navigate(f.base + incPath); got != http.StatusOK {
		t.Fatalf("reload: %d", got)
	}
	if got := p.Text(action + " .badge"); got != "succeeded" {
		t.Errorf("after the reload the action is %q, want succeeded", got)
	}
	if got := p.Text(action + " .decisions"); !strings.Contains(got, "alice: approve") || !strings.Contains(got, "via web") {
		t.Errorf("the action's decisions %q, want alice's approval via web", got)
	}
	if got := p.Text("#timeline"); !strings.Contains(got, "approval approved by alice") {
		t.Errorf("the timeline does not show alice's approval:\n%s", got)
	}
	if n := p.Count(fmt.Sprintf("#approve-%d, #deny-%d", id, id)); n != 0 {
		t.Errorf("the decided action still offers %d decision forms", n)
	}
	if n := len(f.sink.Calls()); n != 1 {
		t.Errorf("%d calls to the sink, want 1", n)
	}
}

// TestBrowserReadUserSeesNoButtons: bob (read) sees the incident, the approvals and the status,
// with no form that changes anything; a form forged in his tab (with his credentials and cookies
// and a made-up token) and a plain HTTP POST with his credentials both answer 403 and change
// nothing.
func TestBrowserReadUserSeesNoButtons(t *testing.T) {
	o := consoleOpts(t)
	o.rules = approvalRules
	f := startApp(t, o)
	id, incID := awaitingAction(t, f, crashLoopAlert())
	b := startBrowser(t)

	p := b.Page(t, f.base+fmt.Sprintf("/ui/incidents/%d", incID), browsertest.PageOptions{User: readUser, Password: readPassword})
	if got := p.Status(); got != http.StatusOK {
		t.Fatalf("bob's incident page: %d", got)
	}
	if got, want := p.Text("#who"), "bob · read"; got != want {
		t.Errorf("#who %q, want %q", got, want)
	}
	if got := p.Text(fmt.Sprintf("#action-%d .badge", id)); got != "awaiting_approval" {
		t.Errorf("bob sees the action as %q, want awaiting_approval", got)
	}
	changes := `form[method="post"], button.approve, button.deny, input[name="csrf"]`
	for _, path := range []string{fmt.Sprintf("/ui/incidents/%d", incID), "/ui/", "/ui/actions", "/ui/status", "/ui/audit"} {
		if got := p.Navigate(f.base + path); got != http.StatusOK {
			t.Fatalf("bob's %s: %d", path, got)
		}
		if n := p.Count(changes); n != 0 {
			t.Errorf("bob's %s holds %d forms or buttons that change something", path, n)
		}
	}
	if n := p.Count("#pause, #resume"); n != 0 {
		t.Errorf("bob's status page offers pause or resume (%d)", n)
	}

	// A forged Approve from bob's own tab: the browser sends his credentials (and any cookie).
	if got := submitForm(t, p, fmt.Sprintf("/ui/actions/%d/approve", id),
		map[string]string{"csrf": "made-up-token", "back": "/ui/"}); got != http.StatusForbidden {
		t.Errorf("bob's forged approve: %d, want 403", got)
	}
	if got := p.Text("body"); !strings.HasPrefix(got, "403 forbidden") {
		t.Errorf("the forged approve's page %q, want the 403", got)
	}
	// The browser logs the 403 document as a failed load: the one error expected here.
	if errs := p.TakeErrors(); len(errs) != 1 || !strings.Contains(errs[0].Text, "403") {
		t.Errorf("console errors %v, want the one failed load (403)", errs)
	}
	// A plain HTTP POST with bob's credentials and a made-up token.
	br := newBrowser(t, f, readUser, readPassword)
	if code, body := br.post("/ui/pause", url.Values{"csrf": {"made-up-token"}, "duration": {"1h"}, "reason": {"forged"}}); code != http.StatusForbidden {
		t.Errorf("bob's forged pause: %d %s, want 403", code, body)
	}

	if got := actionState(t, f, id); got != "awaiting_approval" {
		t.Errorf("after bob's forgeries the action is %s, want awaiting_approval", got)
	}
	var paused bool
	must(t, f.app.Store().Pool().QueryRow(context.Background(), `SELECT coalesce((SELECT paused FROM pause), false)`).Scan(&paused))
	if paused || len(f.sink.Calls()) != 0 {
		t.Errorf("bob's forgeries changed something: paused %v, %d calls to the sink", paused, len(f.sink.Calls()))
	}
}

// TestBrowserPauseSkipsDisruptiveAction: alice fills the status page's pause form (duration and
// reason) and clicks Pause; the disruptive action of an alert that fires after it is skipped as
// paused and never runs, and the incident page says so; Resume from the page.
func TestBrowserPauseSkipsDisruptiveAction(t *testing.T) {
	f := startApp(t, consoleOpts(t))
	b := startBrowser(t)
	p := b.Page(t, f.base+"/ui/status", browsertest.PageOptions{User: consoleUser, Password: consolePassword})
	if got := p.Text("#pause-state"); !strings.HasPrefix(got, "Running") {
		t.Fatalf("#pause-state %q, want Running", got)
	}
	p.Fill(`#pause input[name="duration"]`, "1h")
	p.Fill(`#pause input[name="reason"]`, "db maintenance")
	if got := p.ClickNavigate("#pause-submit"); got != http.StatusOK {
		t.Fatalf("Pause: %d", got)
	}
	if got := p.Text("#flash"); !strings.HasPrefix(got, "Paused until ") {
		t.Errorf("#flash %q, want \"Paused until …\"", got)
	}
	if got := p.Text("#pause-state"); !strings.HasPrefix(got, "PAUSED") || !strings.Contains(got, "by alice (db maintenance)") {
		t.Errorf("#pause-state %q, want PAUSED by alice (db maintenance)", got)
	}

	if code := f.post(payload("firing", time.Now().UTC().Truncate(time.Second), "p1")); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	var id, incID int
	testwait.Until(t, 20*time.Second, "the restart skipped as paused", func() bool {
		for _, a := range f.actions("") {
			if a["state"] == "skipped" && a["reason"] == "paused" {
				id, incID = int(a["id"].(float64)), int(a["incident_id"].(float64))
				return true
			}
		}
		return false
	})
	var started int
	must(t, f.app.Store().Pool().QueryRow(context.Background(),
		`SELECT count(*) FROM actions WHERE class = 'disruptive' AND started_at IS NOT NULL`).Scan(&started))
	if n := len(f.sink.Calls()); n != 0 || started != 0 {
		t.Fatalf("while paused: %d calls to the sink, %d disruptive actions started", n, started)
	}

	if got := p.Navigate(f.base + fmt.Sprintf("/ui/incidents/%d", incID)); got != http.StatusOK {
		t.Fatalf("the incident page: %d", got)
	}
	action := fmt.Sprintf("#action-%d", id)
	if got := p.Text(action + " .badge"); got != "skipped" {
		t.Errorf("the action's state %q, want skipped", got)
	}
	if got := p.Text(action + " .reason"); !strings.HasPrefix(got, "reason: paused") {
		t.Errorf("the action's reason %q, want \"reason: paused …\"", got)
	}

	if got := p.Navigate(f.base + "/ui/status"); got != http.StatusOK {
		t.Fatalf("the status page: %d", got)
	}
	p.Fill(`#resume input[name="reason"]`, "maintenance done")
	if got := p.ClickNavigate("#resume-submit"); got != http.StatusOK {
		t.Fatalf("Resume: %d", got)
	}
	if got := p.Text("#flash"); !strings.HasPrefix(got, "Resumed") {
		t.Errorf("#flash %q, want Resumed", got)
	}
	if got := p.Text("#pause-state"); !strings.HasPrefix(got, "Running") {
		t.Errorf("#pause-state %q after Resume, want Running", got)
	}
	if n := len(f.sink.Calls()); n != 0 {
		t.Errorf("the skipped action ran after the resume: %d calls", n)
	}
}

// TestBrowserScriptLabelShowsAsText: an alert whose label holds <script>alert(1)</script> and whose
// summary holds an <img onerror>: the incidents list and the incident page show both as text
// (read from the rendered elements), the document holds no script or image element, the
// javascript: runbook is no link, and no dialog opens, no exception is thrown and the CSP reports
// nothing (the page's console stays empty).
func TestBrowserScriptLabelShowsAsText(t *testing.T) {
	f := startApp(t, consoleOpts(t))
	if code := f.post(hostileAlert(time.Now().UTC().Truncate(time.Second))); code != 200 {
		t.Fatalf("webhook: %d", code)
	}
	testwait.Until(t, 20*time.Second, "the incident's action", func() bool { return len(f.actions("")) > 0 })
	incID := int(f.actions("")[0]["incident_id"].(float64))
	b := startBrowser(t)

	p := b.Page(t, "", browsertest.PageOptions{User: consoleUser, Password: consolePassword})
	var d dialogs
	d.watch(t, p)
	if got := p.Navigate(f.base + "/ui/"); got != http.StatusOK {
		t.Fatalf("GET /ui/: %d", got)
	}
	if got := p.Text(fmt.Sprintf("#incident-%d .labels", incID)); !strings.Contains(got, "team=<script>alert(1)</script>") {
		t.Errorf("the incidents list shows the labels as %q, want team=<script>alert(1)</script> as text", got)
	}
	if got := p.ClickNavigate(fmt.Sprintf(`#incident-%d a[href="/ui/incidents/%d"]`, incID, incID)); got != http.StatusOK {
		t.Fatalf("the incident page: %d", got)
	}
	for _, tc := range []struct{ list, term, want string }{
		{"#labels", "team", "<script>alert(1)</script>"},
		{"#annotations", "summary", "<img src=x onerror=alert(1)>"},
		{"#annotations", "runbook_url", "javascript:alert(1)"},
	} {
		if got := ddText(t, p, tc.list, tc.term); got != tc.want {
			t.Errorf("%s %s shows %q, want %q as text", tc.list, tc.term, got, tc.want)
		}
	}
	for _, sel := range []string{"script", "img", "#runbook", `a[href^="javascript:"]`} {
		if n := p.Count(sel); n != 0 {
			t.Errorf("the incident page holds %d %s", n, sel)
		}
	}
	if n := p.Count("#dashboard"); n != 1 {
		t.Errorf("the https dashboard link: %d, want 1", n)
	}
	if got := d.list(); len(got) != 0 {
		t.Errorf("dialogs opened: %q", got)
	}
}

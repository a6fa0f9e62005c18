package browsertest_test

import (
	"bytes"
	"crypto/subtle"
	"fmt"
	"html/template"
	"image/png"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/responder-sre/responder/internal/browsertest"
)

func TestMain(m *testing.M) { browsertest.Main(m) }

const (
	user     = "alice"
	password = "wonderland"
	// csp is the console's policy: no inline script, everything from the page's own origin.
	csp = "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'"
)

// newServer serves the pages of testdata under a strict Content-Security-Policy: a form behind
// basic auth (its stylesheet too) that posts and redirects, pages whose static scripts log an error or throw, a page
// with a (blocked) inline script and one whose script is missing.
func newServer(t *testing.T) *httptest.Server {
	t.Helper()
	done := template.Must(template.ParseFiles("testdata/done.html"))
	mux := http.NewServeMux()
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(os.DirFS("testdata/static"))))
	for _, name := range []string{"console-error", "exception", "inline-script", "missing-script", "clean"} {
		mux.Handle("GET /"+name, file(name+".html"))
	}
	// The form's stylesheet is behind basic auth too, as the console's /ui/static/ is: the
	// browser sends the credentials it was challenged for with the subresource's request.
	mux.Handle("GET /auth-static/", basicAuth(http.StripPrefix("/auth-static/", http.FileServerFS(os.DirFS("testdata/static")))))
	mux.Handle("GET /form", basicAuth(file("form.html")))
	mux.Handle("POST /submit", basicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/done?name="+url.QueryEscape(r.PostFormValue("name")), http.StatusSeeOther)
	})))
	mux.Handle("GET /done", basicAuth(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _, _ := r.BasicAuth()
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := done.Execute(w, map[string]string{"Name": r.FormValue("name"), "User": u}); err != nil {
			t.Errorf("done.html: %v", err)
		}
	})))
	mux.HandleFunc("GET /cookie", func(w http.ResponseWriter, r *http.Request) {
		_, err := r.Cookie("seen")
		http.SetCookie(w, &http.Cookie{Name: "seen", Value: "1", Path: "/", SameSite: http.SameSiteStrictMode})
		fmt.Fprintf(w, "cookie before: %t", err == nil)
	})
	mux.Handle("GET /favicon.ico", http.NotFoundHandler())
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", csp)
		w.Header().Set("X-Frame-Options", "DENY")
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func file(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFile(w, r, filepath.Join("testdata", name))
	})
}

func basicAuth(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="test", charset="UTF-8"`)
			http.Error(w, "401 Unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// The console's flow: log in, fill a form, click the button that posts, follow the redirect, see
// the result escaped, and a screenshot of it. The page logs no error (checked when it closes).
func TestFormPostRedirect(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	p := b.Page(t, srv.URL+"/form", browsertest.PageOptions{User: user, Password: password})
	if got := p.Status(); got != http.StatusOK {
		t.Fatalf("GET /form: status %d, want 200", got)
	}
	p.Fill("#name", "<b>Ada</b>")
	if got := p.ClickNavigate("#send"); got != http.StatusOK {
		t.Fatalf("after the POST and its redirect: status %d, want 200", got)
	}
	if got, want := p.URL(), srv.URL+"/done?name="+url.QueryEscape("<b>Ada</b>"); got != want {
		t.Errorf("URL %q, want %q", got, want)
	}
	if got, want := p.Text("#result"), "Hello, <b>Ada</b> (alice)"; got != want {
		t.Errorf("#result %q, want %q", got, want)
	}
	if n := p.Count("#result b"); n != 0 {
		t.Errorf("the name became markup: %d <b> elements in #result", n)
	}
	if n := p.Count("#reveal"); n != 1 {
		t.Errorf("Count(#reveal) = %d, want 1 (hidden elements count)", n)
	}
	path := filepath.Join(t.TempDir(), "shots", "done.png")
	p.Screenshot(path)
	if w, _ := decodePNG(t, path); w != 1280 {
		t.Errorf("screenshot %d pixels wide, want the window's 1280", w)
	}
	if errs := p.Errors(); len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

func decodePNG(t *testing.T, path string) (w, h int) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) {
		t.Fatalf("%s is not a PNG: starts with %q", path, data[:min(len(data), 8)])
	}
	cfg, err := png.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return cfg.Width, cfg.Height
}

func TestBasicAuth(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	for _, tc := range []struct {
		name, user, password string
		wantStatus           int64
		wantText             string
	}{
		{name: "no credentials", wantStatus: http.StatusUnauthorized, wantText: "401 Unauthorized"},
		{name: "wrong password", user: user, password: "rabbit", wantStatus: http.StatusUnauthorized, wantText: "401 Unauthorized"},
		{name: "alice", user: user, password: password, wantStatus: http.StatusOK, wantText: "Say hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := b.Page(t, srv.URL+"/form", browsertest.PageOptions{User: tc.user, Password: tc.password})
			if got := p.Status(); got != tc.wantStatus {
				t.Errorf("status %d, want %d", got, tc.wantStatus)
			}
			if got := p.Text("body"); !strings.Contains(got, tc.wantText) {
				t.Errorf("body %q does not contain %q", got, tc.wantText)
			}
			// The browser logs a document's 401 as a failed load: an error, expected here.
			errs := p.TakeErrors()
			if tc.wantStatus != http.StatusOK && (len(errs) != 1 || !strings.Contains(errs[0].Text, "401")) {
				t.Errorf("errors %v, want the one failed load (401)", errs)
			}
		})
	}
}

// Every kind of error a page can log reaches Errors through the DevTools protocol, in order, with
// where it came from; a plain console.log does not count as one.
func TestConsoleErrors(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	type wantErr struct{ source, text, urlSuffix string }
	for _, tc := range []struct {
		page string
		want []wantErr
	}{
		{page: "console-error", want: []wantErr{
			{"console", "boom from a static script 42", "/static/console-error.js"},
		}},
		{page: "exception", want: []wantErr{
			{"exception", "Uncaught Error: thrown by throw.js", "/static/throw.js"},
		}},
		// The CSP blocks the inline script (#status keeps its text) and reports the violation.
		{page: "inline-script", want: []wantErr{
			{"security", "Executing inline script violates the following Content Security Policy directive 'script-src 'self''", "/inline-script"},
		}},
		// The 404, then the refusal to run its text/plain (nosniff) body.
		{page: "missing-script", want: []wantErr{
			{"network", "the server responded with a status of 404", "/static/missing.js"},
			{"security", "Refused to execute script from", "/missing-script"},
		}},
	} {
		t.Run(tc.page, func(t *testing.T) {
			p := b.Page(t, srv.URL+"/"+tc.page, browsertest.PageOptions{})
			if got := p.Text("#status"); got != "loaded" {
				t.Errorf("#status %q, want %q", got, "loaded")
			}
			errs := p.TakeErrors()
			if len(errs) != len(tc.want) {
				t.Fatalf("errors %v, want %d", errs, len(tc.want))
			}
			for i, w := range tc.want {
				e := errs[i]
				if e.Source != w.source || e.Level != "error" || !strings.Contains(e.Text, w.text) ||
					!strings.HasSuffix(e.URL, w.urlSuffix) {
					t.Errorf("error %d: %+v, want source %q, level error, text containing %q, URL ending in %q",
						i, e, w.source, w.text, w.urlSuffix)
				}
			}
			if again := p.Errors(); len(again) != 0 {
				t.Errorf("errors after TakeErrors: %v", again)
			}
		})
	}
	t.Run("console.log is no error", func(t *testing.T) {
		p := b.Page(t, srv.URL+"/console-error", browsertest.PageOptions{})
		var logged bool
		for _, m := range p.Messages() {
			logged = logged || (m.Level == "log" && m.Text == "a log line is not an error" && !m.IsError())
		}
		if !logged {
			t.Errorf("console.log line missing from %v", p.Messages())
		}
		p.TakeErrors()
	})
}

// A click that changes the page without loading another: wait for the element it adds and for
// the message a timer logs after it, with no sleep.
func TestClickAndWait(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	p := b.Page(t, srv.URL+"/clean", browsertest.PageOptions{})
	if n := p.Count("#list li"); n != 3 {
		t.Errorf("Count(#list li) = %d, want 3", n)
	}
	if n := p.Count("#clicked"); n != 0 {
		t.Errorf("#clicked before the click: %d", n)
	}
	p.Click("#later")
	p.WaitVisible("#clicked")
	if got := p.Text("#clicked"); got != "clicked" {
		t.Errorf("#clicked %q", got)
	}
	m := p.WaitMessage("warned after a click")
	if m.Source != "console" || m.Level != "warning" || m.IsError() {
		t.Errorf("message %+v, want a console warning, not an error", m)
	}
	p.Navigate(srv.URL + "/form") // 401: no credentials
	p.WaitGone("#clicked")
	p.TakeErrors()
}

// Pages are isolated: a cookie set in one tab is not sent by another.
func TestPagesAreIsolated(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	first := b.Page(t, srv.URL+"/cookie", browsertest.PageOptions{})
	if got := first.Text("body"); got != "cookie before: false" {
		t.Fatalf("first visit: %q", got)
	}
	first.Navigate(srv.URL + "/cookie")
	if got := first.Text("body"); got != "cookie before: true" {
		t.Fatalf("second visit in the same page: %q", got)
	}
	second := b.Page(t, srv.URL+"/cookie", browsertest.PageOptions{})
	if got := second.Text("body"); got != "cookie before: false" {
		t.Errorf("another page sent the first page's cookie: %q", got)
	}
}

// A phone-sized viewport: the screenshot has its width.
func TestViewport(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	p := b.Page(t, srv.URL+"/clean", browsertest.PageOptions{Width: 390, Height: 844})
	path := filepath.Join(t.TempDir(), "phone.png")
	p.Screenshot(path)
	if w, h := decodePNG(t, path); w != 390 || h < 844 {
		t.Errorf("screenshot %d×%d, want 390 wide and at least 844 high", w, h)
	}
}

// recorder is a testing.TB that records Errorf and runs its cleanups on demand, to see what a
// page does to its test when it closes.
type recorder struct {
	testing.TB
	errors   []string
	cleanups []func()
}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}
func (r *recorder) Failed() bool     { return len(r.errors) > 0 || r.TB.Failed() }
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) close() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

// An error the test did not take fails the test when the page closes; a taken one does not.
func TestUntakenErrorsFailTheTest(t *testing.T) {
	srv := newServer(t)
	b := browsertest.Start(t)
	for _, take := range []bool{false, true} {
		t.Run(fmt.Sprintf("taken=%t", take), func(t *testing.T) {
			r := &recorder{TB: t}
			p := b.Page(r, srv.URL+"/console-error", browsertest.PageOptions{})
			if take {
				p.TakeErrors()
			}
			r.close()
			switch {
			case take && len(r.errors) != 0:
				t.Errorf("taken errors failed the test: %q", r.errors)
			case !take && (len(r.errors) != 1 || !strings.Contains(r.errors[0], "boom from a static script")):
				t.Errorf("test failures %q, want one naming the console.error", r.errors)
			}
		})
	}
}

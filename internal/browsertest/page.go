package browsertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/fetch"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/responder-sre/responder/internal/testwait"
)

// DefaultTimeout bounds each action and wait of a page whose options set none.
const DefaultTimeout = 10 * time.Second

// PageOptions configures a new page. The zero value is a page with no credentials, the
// browser's window size and DefaultTimeout.
type PageOptions struct {
	// User and Password, when User is set, are sent as HTTP basic auth on every request of the
	// page (an Authorization header, as a browser sends once the user has logged in).
	User, Password string
	// Width and Height, when both are set, emulate a viewport of that size in CSS pixels (a phone
	// is 390×844); otherwise the page has the browser's window, 1280×800.
	Width, Height int64
	// Timeout bounds each action and each wait (DefaultTimeout when zero).
	Timeout time.Duration
}

// Page is one tab, in a browser context of its own, bound to the test that opened it. Its
// methods fail that test on error; they must be called from one goroutine at a time.
type Page struct {
	t       testing.TB
	ctx     context.Context // the tab's chromedp context, with no deadline
	timeout time.Duration
	status  int64

	mu    sync.Mutex
	msgs  []Message
	taken int // msgs[:taken] hold no error the test has not taken
}

// Page opens a new tab in a fresh browser context, with opts, and loads url in it (unless url is
// empty: the tab then stays on about:blank). The page is closed when t ends; if it logged an error
// that t did not take with TakeErrors, t fails then.
func (b *Browser) Page(t testing.TB, url string, opts PageOptions) *Page {
	t.Helper()
	p := &Page{t: t, timeout: opts.Timeout}
	if p.timeout <= 0 {
		p.timeout = DefaultTimeout
	}
	ctx, cancel := chromedp.NewContext(b.ctx, chromedp.WithNewBrowserContext(),
		chromedp.WithListener(p.listen))
	p.ctx = ctx
	t.Cleanup(cancel) // closes the tab and disposes of its browser context
	// The first Do creates the tab and binds its life to ctx: it has no deadline of its own.
	hung := time.AfterFunc(p.timeout, cancel)
	err := chromedp.Do(ctx)
	if !hung.Stop() {
		err = fmt.Errorf("no answer within %s (%w)", p.timeout, err)
	}
	if err != nil {
		t.Fatalf("browsertest: opening a tab: %v", err)
	}
	t.Cleanup(p.checkErrors) // runs before cancel: the tab is still there to ask
	p.answerChallenges(opts.User, opts.Password)
	if opts.Width > 0 && opts.Height > 0 {
		p.do("emulate the viewport", chromedp.EmulateViewport(opts.Width, opts.Height))
	}
	if url != "" {
		p.Navigate(url)
	}
	return p
}

// answerChallenges makes the tab answer an HTTP authentication challenge as a person at the
// browser's login prompt would: with user and password (unless user is empty), and, when the
// server challenges those again (a wrong password), by giving up, so that the tab shows the
// server's 401 page. Chromium then sends the accepted credentials with every later request to the
// same origin and realm, as a browser does, and keeps them in the page's own browser context.
//
// This is the DevTools Fetch domain's auth handling: with it on, every request of the tab pauses
// until it is continued, which two goroutines do until the tab closes.
func (p *Page) answerChallenges(user, password string) {
	p.t.Helper()
	// Subscribe before enabling: no event is lost.
	paused := chromedp.Events(p.ctx, fetch.RequestPaused)
	challenges := chromedp.Events(p.ctx, fetch.AuthRequired)
	p.do("enable the Fetch domain", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, fetch.Enable, fetch.EnableParams{HandleAuthRequests: new(true)})
		return err
	}))
	// The goroutines end when the tab's context does (the iterators then yield its error). A
	// command that fails is about a request the page dropped meanwhile, or a tab going away.
	go func() {
		for ev, err := range paused {
			if err != nil {
				return
			}
			_, _ = chromedp.Call(p.ctx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: ev.RequestID})
		}
	}()
	go func() {
		answered := map[fetch.RequestID]bool{}
		for ev, err := range challenges {
			if err != nil {
				return
			}
			resp := &fetch.AuthChallengeResponse{Response: fetch.AuthChallengeResponseResponseCancelAuth}
			if user != "" && !answered[ev.RequestID] {
				resp = &fetch.AuthChallengeResponse{
					Response: fetch.AuthChallengeResponseResponseProvideCredentials,
					Username: user, Password: password,
				}
				answered[ev.RequestID] = true
			}
			_, _ = chromedp.Call(p.ctx, fetch.ContinueWithAuth,
				fetch.ContinueWithAuthParams{RequestID: ev.RequestID, AuthChallengeResponse: resp})
		}
	}()
}

// Context returns the tab's chromedp context, for an action this package has no helper for. It
// has no deadline: give the action one.
func (p *Page) Context() context.Context { return p.ctx }

// do runs actions on the tab within the page's timeout, failing the test with what on error.
func (p *Page) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		p.t.Fatalf("browsertest: %s: %v", what, err)
	}
}

// get runs one action that returns a value, as do does.
func get[T any](p *Page, what string, a chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		p.t.Fatalf("browsertest: %s: %v", what, err)
	}
	return v
}

// Navigate loads url, waits for its load event and returns the HTTP status of the document (the
// last response when the server redirects).
func (p *Page) Navigate(url string) int64 {
	p.t.Helper()
	resp := get(p, "navigate to "+url, chromedp.NavigateResponse(url))
	return p.loaded(resp)
}

// ClickNavigate clicks the first visible element matching the CSS selector sel (a link, a form's
// submit button) and waits for the page it loads, whose HTTP status it returns (the last response
// when the server redirects, as after a POST).
func (p *Page) ClickNavigate(sel string) int64 {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	resp, err := chromedp.RunResponse(ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		p.t.Fatalf("browsertest: click %q and wait for the page it loads: %v", sel, err)
	}
	return p.loaded(resp)
}

func (p *Page) loaded(resp *network.Response) int64 {
	p.status = 0
	if resp != nil {
		p.status = resp.Status
	}
	return p.status
}

// Status is the HTTP status of the document the last Navigate or ClickNavigate loaded (0 when
// the browser got no response, for a page it did not fetch over HTTP).
func (p *Page) Status() int64 { return p.status }

// Click clicks the first visible element matching sel, waiting for it to be there and visible.
// It does not wait for what the click causes: for a click that loads a page, use ClickNavigate.
func (p *Page) Click(sel string) {
	p.t.Helper()
	p.do(fmt.Sprintf("click %q", sel), chromedp.Click(chromedp.CSS(sel)))
}

// Fill sets the value of the form field (input, textarea, select) matching sel, waiting for it.
func (p *Page) Fill(sel, value string) {
	p.t.Helper()
	p.do(fmt.Sprintf("fill %q", sel), chromedp.SetValue(chromedp.CSS(sel), value))
}

// Text returns the text of the first element matching sel as it is rendered (innerText),
// waiting for the element to be there.
func (p *Page) Text(sel string) string {
	p.t.Helper()
	return get(p, fmt.Sprintf("read the text of %q", sel), chromedp.Text(chromedp.CSS(sel)))
}

// WaitVisible waits until an element matching sel is there and visible.
func (p *Page) WaitVisible(sel string) {
	p.t.Helper()
	p.do(fmt.Sprintf("wait for %q to be visible", sel), chromedp.WaitVisible(chromedp.CSS(sel)))
}

// WaitGone waits until no element matches sel.
func (p *Page) WaitGone(sel string) {
	p.t.Helper()
	p.do(fmt.Sprintf("wait for %q to be gone", sel), chromedp.WaitNotPresent(chromedp.CSS(sel)))
}

// Count returns how many elements match sel now, without waiting (0 is an answer: "bob sees no
// Approve button").
func (p *Page) Count(sel string) int {
	p.t.Helper()
	q, err := json.Marshal(sel)
	if err != nil {
		p.t.Fatalf("browsertest: count %q: %v", sel, err)
	}
	return get(p, fmt.Sprintf("count %q", sel),
		chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%s).length", q)))
}

// URL returns the address of the document in the tab.
func (p *Page) URL() string {
	p.t.Helper()
	return get(p, "read the location", chromedp.Location())
}

// Screenshot writes a PNG of the whole page (beyond the viewport) to path, creating its
// directory.
func (p *Page) Screenshot(path string) {
	p.t.Helper()
	png := get(p, "take a screenshot", chromedp.FullScreenshot(100))
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatalf("browsertest: screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatalf("browsertest: screenshot: %v", err)
	}
}

// sync returns once the browser has answered a command sent now: every console event the tab sent
// before that answer has then been through listen (chromedp calls listeners in the tab's read
// loop, in the order of arrival).
func (p *Page) sync() {
	p.t.Helper()
	get(p, "read the console", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, runtime.Evaluate, runtime.EvaluateParams{Expression: "0"})
		return err
	}))
}

// Messages returns everything the page has written to its console so far, errors or not.
func (p *Page) Messages() []Message {
	p.t.Helper()
	p.sync()
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Message(nil), p.msgs...)
}

// Errors returns the errors the page has logged so far (see Message.IsError) that the test has
// not taken with TakeErrors.
func (p *Page) Errors() []Message {
	p.t.Helper()
	p.sync()
	p.mu.Lock()
	defer p.mu.Unlock()
	return errorsIn(p.msgs[p.taken:])
}

// TakeErrors returns the errors the page has logged since the last TakeErrors and marks them as
// expected, so that closing the page does not fail the test for them.
func (p *Page) TakeErrors() []Message {
	p.t.Helper()
	p.sync()
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := errorsIn(p.msgs[p.taken:])
	p.taken = len(p.msgs)
	return errs
}

// WaitMessage waits until the page has written a console message whose text contains substr, and
// returns it (for a message written after the page loaded, by a timer or a later event).
func (p *Page) WaitMessage(substr string) Message {
	p.t.Helper()
	var found Message
	testwait.UntilDetail(p.t, p.timeout, fmt.Sprintf("a console message containing %q", substr),
		func() (bool, string) {
			msgs := p.Messages()
			for _, m := range msgs {
				if strings.Contains(m.Text, substr) {
					found = m
					return true, ""
				}
			}
			return false, fmt.Sprint(msgs)
		})
	return found
}

// checkErrors fails the test when the page logged errors it did not take.
func (p *Page) checkErrors() {
	p.t.Helper()
	if p.t.Failed() {
		return // the failure at hand matters more; and the tab may be what failed
	}
	if errs := p.Errors(); len(errs) > 0 {
		p.t.Errorf("browsertest: the page logged %d error(s) the test did not expect:\n%s",
			len(errs), formatMessages(errs))
	}
}

// Package browsertest drives Debian's Chromium, headless, for the web console's browser tests.
// Only tests import it.
//
// The contract:
//
//   - The browser is the system's: $CHROMIUM_BIN, else /usr/bin/chromium (Debian's package
//     chromium, which `make test` installs as root through scripts/ensure-deps.sh). Nothing is
//     downloaded. When the binary is missing the test fails (never skips) with InstallHint.
//
//   - One browser serves the whole test binary: Start starts it on first use and Main (or Run)
//     closes it, as store/pgtest does with its shared server:
//
//     func TestMain(m *testing.M) { browsertest.Main(m) }
//
//     Without that the browser still dies with the test binary (a parent-death signal), but its
//     temporary profile directory stays behind in $TMPDIR.
//
//   - Each Page is a tab in a browser context of its own (an incognito-like profile): cookies,
//     cache and storage are not shared between two pages, so alice's session never leaks into
//     bob's. It closes when its test ends.
//
//   - Basic auth: a page answers the server's HTTP authentication challenge as a person at the
//     login prompt would, with PageOptions.User and Password (or by cancelling the prompt when
//     there is no user, or when the server rejects them: the tab then shows the server's 401
//     page). Chromium then sends the credentials with every later request of that origin and
//     realm, as a browser does. This is the DevTools Fetch domain's auth handling; no JavaScript
//     is involved, so the console sees what a person's browser sends. (With the Fetch domain on,
//     every request of the tab waits for a "continue" from the test process: one round trip over
//     the pipe per request.)
//
//   - Every action and every wait has a deadline (PageOptions.Timeout, 10s by default) and fails
//     the test with what it waited for. Waits are the browser's own (a query retried until the
//     element is there, the load event of a navigation), never a sleep.
//
//   - The page's console is collected through the DevTools protocol from the tab's first event:
//     Runtime.consoleAPICalled (console.error, console.warn, …), Runtime.exceptionThrown (an
//     uncaught exception or an unhandled rejection) and Log.entryAdded (the browser's own
//     messages: a Content-Security-Policy violation, a failed subresource load; not the 404 of
//     the /favicon.ico that the browser asks for on its own). A page whose errors the test did
//     not take with TakeErrors fails its test when it closes, so a browser test asserts
//     "console.error stays empty" without a line of its own.
//
// # Why chromedp (v0.23, the generic API) and not go-rod
//
// chromedp needs nothing but the standard library and its protocol types (cdproto, with
// go-json-experiment/json until encoding/json/v2 is in the standard library); go-rod brings six
// modules of one author, among them leakless, which writes an embedded helper executable to the
// temporary directory and runs it, and fetchup, its downloader of browsers, which runs when the
// binary is not found. chromedp talks to the browser over a pipe (--remote-debugging-pipe): no
// debugging port is opened on loopback, where any local process could drive the browser, and
// none can collide. Its API takes a context everywhere, as this code base does (contextcheck),
// returns errors instead of go-rod's panicking Must… helpers, and its ordered listener
// (WithListener) sees every event of a tab before the reply to any later command, which makes
// "the console has no error" a deterministic check rather than a race with an event queue.
//
// # Flags
//
// chromedp's defaults (headless, no first run, no background networking, sync, extensions or
// component updates: this machine's network is closed and Chromium would otherwise try Google's
// hosts at every start) plus a fixed window size. As root (a CI container) Chromium refuses to
// start without --no-sandbox, and chromedp adds exactly that flag when the uid is 0; as any other
// user the sandbox stays on. No other security feature is turned off: site isolation, CSP and
// mixed-content checks stay as in a user's browser.
package browsertest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// DefaultBin is the browser when $CHROMIUM_BIN is not set: Debian's chromium package.
const DefaultBin = "/usr/bin/chromium"

// InstallHint is the message a test fails with when the browser is missing.
const InstallHint = "Chromium is missing: run 'apt-get install -y chromium' as root " +
	"(`make deps` or `make test` does it), or point $CHROMIUM_BIN at a Chromium binary"

// errMissing is the error of a start whose binary is not there.
var errMissing = errors.New("not found")

// startTimeout bounds the browser's start; a healthy start takes well under a second.
const startTimeout = 30 * time.Second

// Bin returns the path of the browser binary: $CHROMIUM_BIN, else DefaultBin.
func Bin() string {
	if b := os.Getenv("CHROMIUM_BIN"); b != "" {
		return b
	}
	return DefaultBin
}

// Browser is one running headless Chromium.
type Browser struct {
	ctx         context.Context    // the browser's chromedp context: its life is the browser's
	cancel      context.CancelFunc // closes the browser's context
	cancelAlloc context.CancelFunc // kills the process and removes its profile directory
	output      *limitedBuffer     // what the browser printed, for failures
	startup     time.Duration
}

var (
	sharedOnce sync.Once
	shared     *Browser
	sharedErr  error
)

// Start returns the test binary's browser, starting it on first use. A failed start fails every
// test that asks for the browser, with the reason (InstallHint when the binary is missing).
func Start(t testing.TB) *Browser {
	t.Helper()
	sharedOnce.Do(func() {
		// The browser outlives the test that happens to start it: Main closes it.
		ctx := context.WithoutCancel(t.Context())
		shared, sharedErr = launch(ctx)
		if sharedErr != nil && !errors.Is(sharedErr, errMissing) {
			// Seen once in about 70 starts on a loaded machine: the browser's main process
			// vanished silently during its start. A second start has always worked.
			t.Logf("browsertest: %v; starting it again", sharedErr)
			shared, sharedErr = launch(ctx)
		}
		if sharedErr == nil {
			t.Logf("browsertest: %s started in %s", Bin(), shared.startup.Round(time.Millisecond))
		}
	})
	if sharedErr != nil {
		t.Fatalf("browsertest: %v", sharedErr)
	}
	return shared
}

// Main runs the package's tests and then closes the shared browser. Use it as
//
//	func TestMain(m *testing.M) { browsertest.Main(m) }
func Main(m *testing.M) {
	os.Exit(Run(m))
}

// Run is Main for a TestMain that has its own cleanup to do: it runs the tests, closes the shared
// browser and returns the exit code.
func Run(m *testing.M) int {
	code := m.Run()
	if shared != nil {
		shared.Close()
	}
	return code
}

// launch starts a browser whose life is bounded by parent.
func launch(parent context.Context) (*Browser, error) {
	bin := Bin()
	if _, err := os.Stat(bin); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w. %s", bin, errMissing, InstallHint)
		}
		return nil, fmt.Errorf("%s: %w", bin, err)
	}
	out := &limitedBuffer{max: 64 << 10}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.WindowSize(1280, 800),
		chromedp.Flag("disable-component-update", true),
		chromedp.CombinedOutput(out),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(parent, opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	b := &Browser{ctx: ctx, cancel: cancel, cancelAlloc: cancelAlloc, output: out}

	start := time.Now()
	// The first Do starts the browser and binds its life to ctx, so it gets no deadline of its
	// own: a start that hangs is ended by cancelling ctx instead.
	hung := time.AfterFunc(startTimeout, cancel)
	err := chromedp.Do(ctx)
	if !hung.Stop() {
		err = fmt.Errorf("no answer within %s (%w)", startTimeout, err)
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("starting %s: %w; its output: %s", bin, err, out.String())
	}
	b.startup = time.Since(start)
	return b, nil
}

// Close closes the browser (gracefully, then by force) and removes its profile directory.
func (b *Browser) Close() {
	if err := chromedp.Cancel(b.ctx); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintf(os.Stderr, "browsertest: closing the browser: %v\n", err)
	}
	b.cancel()
	b.cancelAlloc()
}

// StartupTime is how long the browser took to start and answer its first command.
func (b *Browser) StartupTime() time.Duration { return b.startup }

// Output is what the browser process printed (its first 64 KiB), for a failure's message.
func (b *Browser) Output() string { return b.output.String() }

// limitedBuffer keeps the first max bytes written to it; the browser writes from its own
// goroutine while a failing test may read.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.buf.Len(); room > 0 {
		l.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

package main

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// chromiumPath finds the browser the tests drive. Missing Chromium is a failure with the
// fix in the message, never a skip: CI must not count an unrun browser test as passed.
func chromiumPath(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("KIOSKFEED_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("Chromium not found. Install it with 'apt-get update && apt-get install -y chromium' " +
		"('go tool -modfile=tools/go.mod task test' does this when it can), or set KIOSKFEED_CHROMIUM to its path.")
	return ""
}

// cspWatch collects Content-Security-Policy violations in every document of a tab. It is
// injected through the DevTools protocol, which the page's CSP does not govern.
const cspWatch = `window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', e =>
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline')));`

// newBrowser starts a headless Chromium with its own profile in dir (a fresh one when
// dir is ""): a separate person at a separate device. It returns the context of its
// first tab. The flags keep Chromium off the network (NOTES.md).
func newBrowser(t testing.TB, dir string, width, height int) context.Context {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromiumPath(t)),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(width, height),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-default-apps", true),
	}
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	if err := chromedp.Do(ctx, injectOnEveryDocument(cspWatch)); err != nil {
		t.Fatalf("start Chromium: %v", err)
	}
	return ctx
}

// injectOnEveryDocument runs js in every document the tab loads, before its own scripts.
func injectOnEveryDocument(js string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tgt *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: js})
		return chromedp.Void{}, err
	}
}

// cspViolations returns what the current document's CSP refused.
func cspViolations(t testing.TB, ctx context.Context) []string {
	t.Helper()
	raw, err := chromedp.Run(ctx, chromedp.Evaluate[[]byte](`window.__cspViolations || []`))
	if err != nil {
		t.Fatalf("read CSP violations: %v", err)
	}
	var v []string
	_ = json.Unmarshal(raw, &v)
	return v
}

// waitJS evaluates a JavaScript expression (or a promise of one) every 100 ms until it
// is true, within d: for what the page shows after the network answers, never a fixed
// sleep. Evaluation errors (the page navigating away mid-check) are retried until the
// deadline.
func waitJS(t testing.TB, ctx context.Context, expr string, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	var last error
	for time.Now().Before(deadline) {
		evalCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok, err := chromedp.Run(evalCtx, chromedp.Evaluate[bool](expr, chromedp.EvalAwaitPromise))
		cancel()
		if err == nil && ok {
			return
		}
		last = err
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the page never satisfied %q within %v (last error: %v)", expr, d, last)
}

// screenshot saves a PNG of the tab as a test artifact (in $KIOSKFEED_ARTIFACTS, default
// the test's temp dir) and returns its path.
func screenshot(t testing.TB, ctx context.Context, name string) string {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("KIOSKFEED_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".png")
	if err := os.WriteFile(path, buf, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot: %s", path)
	return path
}

// freeAddr picks a loopback port for a server whose public URL must name its own port
// (the DPoP htu the browser signs is its own origin).
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return "127.0.0.1:" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

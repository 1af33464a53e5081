package harness

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// ChromiumPackages is Debian's Chromium, driven headless by chromedp.
var ChromiumPackages = map[string]string{"/usr/bin/chromium": "chromium"}

// StartBrowser starts Debian's headless Chromium for t (installing it if
// missing) and returns a chromedp context of one tab. The browser reaches
// loopback only: every other address goes to a proxy that is not there
// (127.0.0.1:9, the discard port), host names other than localhost do
// not resolve, and background fetches (updates, sync, metrics) are off.
// As root it runs with --no-sandbox (chromedp adds it). The browser is
// stopped when the test ends: chromedp closes it, and if its process is
// still there it is killed by its PID (the test then fails).
func StartBrowser(t testing.TB) context.Context {
	t.Helper()
	Require(t, ChromiumPackages)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.UserDataDir(TempDir(t, "chromium-")),
		chromedp.WindowSize(1280, 900),
		chromedp.Flag("proxy-server", "http://127.0.0.1:9"),
		chromedp.Flag("proxy-bypass-list", "<-loopback>;127.0.0.0/8"),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND , EXCLUDE localhost , EXCLUDE 127.0.0.1"),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("disable-gpu", true),
	)
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		cancel()
		acancel()
		t.Fatalf("harness: start chromium: %v", err)
	}
	pid := chromedp.FromContext(ctx).Browser.Process().Pid
	t.Logf("harness: chromium pid %d", pid)
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
		chromedp.Cancel(cctx) //nolint:errcheck // checked below: the process must be gone
		ccancel()
		cancel()
		acancel()
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Errorf("harness: chromium pid %d was still running after chromedp closed it; killed", pid)
		}
	})
	return ctx
}

// alive reports whether process pid exists and is not a zombie.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...: comm may hold spaces, so look after the last ')'.
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

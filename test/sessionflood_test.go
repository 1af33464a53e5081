package test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/test/harness"
)

// TestSessionFloodKeepsRefusal is the review's finding 4 against the real
// Dovecot: the Dovecot door remembers 100,000 sessions to tell Dovecot's
// second allow call (made only after a right password) from the first.
// Before, a banned login was tarpitted on the first call and refused on
// the second; a flood of other sessions during the tarpit made the second
// call look like a first one, answered with a wait that Dovecot ignores
// there, and the banned login got in with its right password. Now a
// refusal is a refusal on every call: a banned login is refused on the
// first call, and no flood changes that.
func TestSessionFloodKeepsRefusal(t *testing.T) {
	harness.Require(t, harness.DovecotPackages)
	const (
		user, pw = "frank@example.test", "Frank-Secret-6161"
		key      = "sf-e2e-policy-key-6161"
		src      = "127.0.0.161"
		sessions = 100_000 + 1 // the door's table holds 100,000
	)
	dir := harness.TempDir(t, "sf-")
	// The default login_tarpit (1m) left the old door a minute to flood.
	mg := harness.StartMailgate(t, mailgateConfig(t, dir, key, ""))
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:     map[string]string{user: pw},
		PolicyURL: mg.DovecotURL(),
		APIKey:    key,
	})
	mg.MustCLI(t, "ban", "add", "--account", user, "--for", "1h", "--comment", "session flood test")

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	login := make(chan error, 1)
	go func() {
		login <- harness.IMAPLogin(ctx, netip.MustParseAddr(src), dc.IMAPAddr, user, pw)
	}()

	// Once Dovecot's first call for the login is in, flood the door with
	// other sessions' first calls, from 8 keep-alive connections.
	mg.WaitLogLine(t, map[string]string{"decision": "deny", "reason": "banned_login", "login": user, "ip": src})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}, Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var floodErr error
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < sessions; i += 8 {
				body := fmt.Sprintf(`{"device_id":"","login":"flood%d@example.test","protocol":"imap","pwhash":"0abc","remote":"127.0.0.162","session_id":"flood%07d","tls":false}`, i%1000, i)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, mg.DovecotURL()+"?command=allow", strings.NewReader(body))
				req.Header.Set("X-API-Key", key)
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body) //nolint:errcheck // drained for reuse
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("HTTP %d", resp.StatusCode)
					}
				}
				if err != nil {
					mu.Lock()
					floodErr = errors.Join(floodErr, fmt.Errorf("flood request %d: %w", i, err))
					mu.Unlock()
					return
				}
			}
		}()
	}
	wg.Wait()
	if floodErr != nil {
		t.Fatal(floodErr)
	}

	err := <-login
	var le *harness.LoginError
	if !errors.As(err, &le) {
		t.Fatalf("IMAP login of the banned %s with its right password after a flood of %d sessions: want a refusal, got %v", user, sessions, err)
	}
	if !strings.Contains(le.Response, "Too many failed logins for this account") {
		t.Errorf("the refusal reads %q, want mailgate's banned_login text", le.Response)
	}
}

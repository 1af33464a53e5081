package console

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/api"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

const (
	testUser  = "alice"
	testPass  = "correct horse battery"
	testToken = "0123456789abcdef-token"
)

type fixture struct {
	url     string
	tracker *abuse.Tracker
	client  *api.Client // the admin API, in process (actor "test")
	logPath string
	users   string // the users file
	clock   *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start serves the console over a real admin API (SQLite store, engine,
// brute-force tracker) with one user (a cheap hash: the KDF's cost is not
// under test here) and a decision log file.
func start(t *testing.T, token string) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenSQLite(filepath.Join(dir, "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	idx := rules.NewIndex()
	book := api.NewRulebook(st, idx, nil)
	if _, err := book.Load(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	tracker := abuse.New(abuse.DefaultConfig())
	engine := policy.New(idx, nil).WithAbuse(tracker, true, time.Minute, 5*time.Second)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := api.NewServer(book, api.NewBanbook(st, tracker), engine, log, "test", token).WithBruteForce(tracker, nil)
	h, err := hashWith([]byte(testPass), 64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	users := filepath.Join(dir, "users")
	if err := os.WriteFile(users, []byte(testUser+":"+h+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "decisions.log")
	if err := os.WriteFile(logPath, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	con, err := New(Config{Token: token, UsersFile: users, SessionTTL: time.Hour, SignInFailures: 3, SignInWindow: 15 * time.Minute,
		DecisionLog: func() Source { return Source{File: logPath} }}, srv.Handler(), log, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(con.Handler())
	t.Cleanup(hs.Close)
	return &fixture{url: hs.URL, tracker: tracker, client: api.NewHandlerClient(srv.Handler()), logPath: logPath, users: users, clock: clk}
}

// browser is a client with a cookie jar that does not follow redirects.
type browser struct {
	t    *testing.T
	base string
	hc   *http.Client
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: f.url, hc: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, path string, form url.Values, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

var (
	preRE  = regexp.MustCompile(`name="pre" value="([^"]+)"`)
	csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn fills the sign-in form and returns the answer.
func (b *browser) signIn(name, pw string, hdr ...string) (*http.Response, string) {
	b.t.Helper()
	_, page := b.do("GET", "/console/signin", nil)
	m := preRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no pre token on the sign-in page:\n%s", page)
	}
	return b.do("POST", "/console/signin", url.Values{"pre": {m[1]}, "name": {name}, "password": {pw}}, hdr...)
}

func (b *browser) mustSignIn() string {
	b.t.Helper()
	resp, body := b.signIn(testUser, testPass)
	if resp.StatusCode != http.StatusSeeOther {
		b.t.Fatalf("sign-in: %s\n%s", resp.Status, body)
	}
	_, page := b.do("GET", "/console/bans", nil)
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no csrf token on the bans page:\n%s", page)
	}
	return m[1]
}

func TestSignInCookie(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	resp, _ := b.do("GET", "/console/", nil)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/console/signin" {
		t.Fatalf("without a session: %s to %q, want 303 to /console/signin", resp.Status, resp.Header.Get("Location"))
	}
	resp, body := b.signIn(testUser, testPass)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in: %s\n%s", resp.Status, body)
	}
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie {
			sc = c
		}
	}
	if sc == nil {
		t.Fatal("no session cookie")
	}
	if !sc.HttpOnly || sc.SameSite != http.SameSiteStrictMode || sc.Path != "/console/" || sc.Secure || sc.MaxAge != 3600 {
		t.Errorf("cookie %+v: want HttpOnly, SameSite=Strict, Path=/console/, not Secure over plain HTTP, Max-Age 3600", sc)
	}
	if len(sc.Value) != 43 { // 32 bytes, base64url without padding
		t.Errorf("session id %d characters, want 43 (256 bits)", len(sc.Value))
	}
	resp, body = b.do("GET", "/console/", nil)
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, "Sign out") {
		t.Fatalf("overview after sign-in: %s", resp.Status)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}

	// Behind a TLS proxy the cookie is Secure.
	resp, _ = f.browser(t).signIn(testUser, testPass, "X-Forwarded-Proto", "https")
	for _, c := range resp.Cookies() {
		if c.Name == sessionCookie && !c.Secure {
			t.Error("session cookie over HTTPS (X-Forwarded-Proto) is not Secure")
		}
	}
}

func TestSignInFailureTellsNothing(t *testing.T) {
	f := start(t, "")
	msgRE := regexp.MustCompile(`role="alert">([^<]*)<`)
	var msgs []string
	for _, c := range [][2]string{{testUser, "wrong password"}, {"nobody", testPass}, {testUser, ""}} {
		resp, body := f.browser(t).signIn(c[0], c[1])
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%v: %s, want 401", c, resp.Status)
		}
		m := msgRE.FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("%v: no message", c)
		}
		msgs = append(msgs, m[1])
		for _, ck := range resp.Cookies() {
			if ck.Name == sessionCookie && ck.Value != "" {
				t.Errorf("%v: a session cookie after a failed sign-in", c)
			}
		}
	}
	for _, m := range msgs[1:] {
		if m != msgs[0] {
			t.Errorf("messages differ: %q", msgs)
		}
	}
}

func TestSignInNeedsPreToken(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	// A form posted from elsewhere: no pre-sign-in cookie and field.
	resp, _ := b.do("POST", "/console/signin", url.Values{"name": {testUser}, "password": {testPass}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("sign-in without the pre token: %s, want 403", resp.Status)
	}
}

// TestSignInRateLimitedConcurrently: sign-ins sent all at once, while
// each waits for the slow password check, get no more tries than
// sign_in_failures (3) between them.
func TestSignInRateLimitedConcurrently(t *testing.T) {
	f := start(t, "")
	const n = 12
	type try struct {
		b   *browser
		pre string
	}
	tries := make([]try, n)
	for i := range tries {
		b := f.browser(t)
		_, page := b.do("GET", "/console/signin", nil)
		m := preRE.FindStringSubmatch(page)
		if m == nil {
			t.Fatalf("no pre token on the sign-in page:\n%s", page)
		}
		tries[i] = try{b, m[1]}
	}
	codes := make([]int, n)
	var wg sync.WaitGroup
	for i, tr := range tries {
		wg.Go(func() {
			// Unknown names: each check costs the full KDF.
			resp, err := tr.b.hc.PostForm(f.url+"/console/signin", url.Values{"pre": {tr.pre}, "name": {"nobody" + strconv.Itoa(i)}, "password": {"guess"}})
			if err != nil {
				return
			}
			resp.Body.Close()
			codes[i] = resp.StatusCode
		})
	}
	wg.Wait()
	checked := 0
	for _, c := range codes {
		switch c {
		case http.StatusUnauthorized:
			checked++
		case http.StatusTooManyRequests:
		default:
			t.Errorf("answer %d, want 401 or 429 (all: %v)", c, codes)
		}
	}
	if checked != 3 {
		t.Errorf("%d of %d concurrent sign-ins from one address were checked, want 3 (sign_in_failures): %v", checked, n, codes)
	}
}

func TestSignInRateLimited(t *testing.T) {
	f := start(t, "")
	for i := range 3 {
		if resp, _ := f.browser(t).signIn(testUser, "guess"+string(rune('a'+i))); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("failure %d: %s", i+1, resp.Status)
		}
	}
	// Over the limit even the right password is refused, for everyone
	// at this address and for this name.
	resp, _ := f.browser(t).signIn(testUser, testPass)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("after 3 failures: %s, want 429 with Retry-After", resp.Status)
	}
	f.clock.add(16 * time.Minute)
	if resp, _ := f.browser(t).signIn(testUser, testPass); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the window: %s, want 303", resp.Status)
	}
}

func TestTokenSignIn(t *testing.T) {
	f := start(t, testToken)
	if resp, _ := f.browser(t).signIn(TokenUser, testToken); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("token sign-in: %s", resp.Status)
	}
	if resp, _ := f.browser(t).signIn(TokenUser, testToken+"x"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong token: %s", resp.Status)
	}
	g := start(t, "")
	if resp, _ := g.browser(t).signIn(TokenUser, ""); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("token sign-in without a token: %s", resp.Status)
	}
}

func TestCSRF(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	csrf := b.mustSignIn()
	wrong := []byte(csrf)
	wrong[len(wrong)/2] ^= 1 // another base64url character
	for _, c := range []struct {
		name  string
		token string
	}{{"no token", ""}, {"wrong token", string(wrong)}, {"another session's token", f.browser(t).mustSignIn()}} {
		form := url.Values{"ip": {"203.0.113.9"}, "for": {"1h"}}
		if c.token != "" {
			form.Set("csrf", c.token)
		}
		resp, _ := b.do("POST", "/console/bans/add", form)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s: %s, want 403", c.name, resp.Status)
		}
		if bans := f.tracker.Bans(time.Now()); len(bans) != 0 {
			t.Fatalf("%s: a ban was added: %+v", c.name, bans)
		}
	}
	// Without a session at all.
	resp, _ := f.browser(t).do("POST", "/console/bans/add", url.Values{"ip": {"203.0.113.9"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("no session: %s, want 403", resp.Status)
	}
	resp, _ = b.do("POST", "/console/bans/add", url.Values{"ip": {"203.0.113.9"}, "for": {"1h"}, "csrf": {csrf}})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("with the token: %s", resp.Status)
	}
	bans := f.tracker.Bans(time.Now())
	if len(bans) != 1 || bans[0].Prefix.String() != "203.0.113.9/32" || bans[0].CreatedBy != "console:alice" {
		t.Fatalf("bans %+v, want 203.0.113.9 by console:alice", bans)
	}
	// The audit trail names the signed-in user.
	audit, err := f.client.Audit(api.WithActor(context.Background(), "test"), 10)
	if err != nil || len(audit) == 0 || audit[0].Actor != "console:alice" {
		t.Fatalf("audit %+v (%v), want the ban by console:alice", audit, err)
	}
	// The flash on the next page says what happened.
	if _, body := b.do("GET", "/console/bans", nil); !strings.Contains(body, "Ban 1 added.") {
		t.Error("no flash message after adding a ban")
	}
}

func TestSignOutAndExpiry(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	csrf := b.mustSignIn()
	if resp, _ := b.do("POST", "/console/signout", url.Values{"csrf": {csrf}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out: %s", resp.Status)
	}
	if resp, _ := b.do("GET", "/console/bans", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after sign-out: %s, want 303 to the sign-in page", resp.Status)
	}
	b = f.browser(t)
	b.mustSignIn()
	f.clock.add(59 * time.Minute)
	if resp, _ := b.do("GET", "/console/bans", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("before expiry: %s", resp.Status)
	}
	f.clock.add(2 * time.Minute)
	if resp, _ := b.do("GET", "/console/bans", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after expiry: %s, want 303", resp.Status)
	}
}

// Removing a user or changing its password ends its sessions at once:
// an admin whose access is taken away is not left signed in for
// session_ttl; a session's POST is refused as well.
func TestSessionEndsWithUser(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	csrf := b.mustSignIn()
	other := f.browser(t)
	other.mustSignIn()
	h, err := hashWith([]byte("another password here"), 64, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := SetUser(f.users, testUser, h); err != nil { // password changed
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/console/bans", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the password changed: %s, want 303 to the sign-in page", resp.Status)
	}
	resp, _ := other.do("POST", "/console/bans/add", url.Values{"csrf": {csrf}, "kind": {"address"}, "target": {"192.0.2.7"}})
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("POST after the password changed: %s, want 403", resp.Status)
	}
	b = f.browser(t)
	if resp, body := b.signIn(testUser, "another password here"); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-in with the new password: %s\n%s", resp.Status, body)
	}
	if resp, _ := b.do("GET", "/console/bans", nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("with the new password: %s", resp.Status)
	}
	if _, err := SetUser(f.users, testUser, ""); err != nil { // removed
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", "/console/bans", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("after the user was removed: %s, want 303 to the sign-in page", resp.Status)
	}
}

// A login, a comment or a decision-log field holding HTML renders as text.
func TestHostileTextIsInert(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	csrf := b.mustSignIn()
	evil := `<script>alert(1)</script>`
	evilLogin := `x"><img src=x onerror=alert(2)>@example.com`
	now := time.Now().UTC().Format("2006-01-02T15:04:05.000Z")
	line := "time=" + now + " decision=deny reason=banned_login rule=- door=dovecot service=imap login=" +
		`"` + strings.ReplaceAll(evilLogin, `"`, `\"`) + `"` + " ip=203.0.113.9\n" +
		"time=" + now + " auth=failure door=dovecot service=imap login=\"" + evil + "\" ip=203.0.113.10\n"
	if err := os.WriteFile(f.logPath, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("POST", "/console/rules/add", url.Values{"csrf": {csrf}, "account": {"bob@example.com"}, "action": {"deny"},
		"service": {"all"}, "match": {"198.51.100.0/24"}, "comment": {evil}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("adding a rule: %s", resp.Status)
	}
	if _, err := f.client.AddBan(api.WithActor(context.Background(), "test"), api.BanRequest{Account: "bob@example.com", Comment: evil}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/console/", "/console/rules", "/console/bans", "/console/log?login=" + url.QueryEscape(evilLogin),
		"/console/log?reason=refused", "/console/account?login=" + url.QueryEscape(evilLogin), "/console/rules?ex_account=" + url.QueryEscape(evil) + "&ex_ip=203.0.113.9&ex_service=imap"} {
		resp, body := b.do("GET", p, nil)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %s", p, resp.Status)
		}
		if strings.Contains(body, "<script>alert") || strings.Contains(body, "<img src=x") {
			t.Errorf("%s: hostile text rendered as HTML:\n%s", p, body)
		}
		if !strings.Contains(body, "&lt;script&gt;") && !strings.Contains(body, "&lt;img src=x") && !strings.Contains(body, "%3cimg") && !strings.Contains(body, "%3Cimg") {
			t.Errorf("%s: the hostile text is not shown at all (escaped)", p)
		}
	}
}

func TestDecisionLogPage(t *testing.T) {
	f := start(t, "")
	b := f.browser(t)
	b.mustSignIn()
	var sb strings.Builder
	base := time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC)
	for i := range 400 {
		login, dec := "alice@example.com", "allow reason=default"
		if i%3 == 0 {
			login, dec = "bob@example.com", "deny reason=banned_address"
		}
		sb.WriteString("time=" + base.Add(time.Duration(i)*time.Second).Format("2006-01-02T15:04:05.000Z") + " decision=" + dec + " rule=- door=dovecot service=imap login=" + login + " ip=203.0.113." + itoa(i%250) + "\n")
	}
	os.WriteFile(f.logPath, []byte(sb.String()), 0o600)
	resp, body := b.do("GET", "/console/log?login=bob@example.com&reason=banned_address", nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatal(resp.Status)
	}
	if n := strings.Count(body, `<tr class="refused">`); n != 100 {
		t.Errorf("first page: %d lines, want 100 (the page size)", n)
	}
	if strings.Contains(body, ">alice@example.com<") {
		t.Error("the search for bob shows alice")
	}
	more := regexp.MustCompile(`href="(/console/log\?[^"]+)" rel="next"`).FindStringSubmatch(body)
	if more == nil {
		t.Fatal("no link to older lines")
	}
	_, body = b.do("GET", strings.ReplaceAll(more[1], "&amp;", "&"), nil)
	if n := strings.Count(body, `<tr class="refused">`); n != 34 {
		t.Errorf("second page: %d lines, want 34 (bob has 134)", n)
	}
	_, body = b.do("GET", "/console/log?ip=203.0.113.0/30&from=2026-12-01+08:00:00&to=2026-12-01+08:00:03", nil)
	if n := strings.Count(body, "<tr class=") - 0; n != 4 {
		t.Errorf("address and time search: %d lines, want 4:\n%s", n, body)
	}
	if resp, body := b.do("GET", "/console/log?ip=nonsense", nil); resp.StatusCode != http.StatusOK || !strings.Contains(body, "is not an address or network") {
		t.Errorf("bad address: %s", resp.Status)
	}
}

func itoa(i int) string { return strings.TrimSpace(strings.Repeat(" ", 0) + fmtInt(i)) }

func fmtInt(i int) string {
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

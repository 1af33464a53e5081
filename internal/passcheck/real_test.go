package passcheck

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/test/harness"
)

// These tests run against the real Dovecot 2.3 from Debian, started by
// mailgate's test harness (which installs it when missing).

// realUser is an account of the real-Dovecot tests.
type realUser struct {
	login, password string
	// known: Dovecot can verify it. Its passwd-file finds no login holding
	// '"' or '\' (the log shows the login arrived intact), and Dovecot
	// refuses every password with a control character ("Attempted login
	// with password having illegal chars").
	known bool
}

// realUsers have logins and passwords with spaces, quotes, backslashes,
// tabs, braces, IMAP specials and non-ASCII text, which both backends must
// carry unchanged.
var realUsers = []realUser{
	{"alice@example.test", "alicepw", true},
	{"bob@example.test", "Bob-Secret-1701", true},
	{"sp ace@example.test", `pass word "quoted" back\slash`, true},
	{"tab\tlogin@example.test", `tab\t is "not" a tab`, true},
	{"jürgen@example.test", "pässwörd-€-日本", true},
	{"brace{3}@example.test", "{3}", true},
	{"percent%u@example.test", "%u%d 100%", true},
	{"lead@example.test", "  lead and trail  ", true},
	{"star*@example.test", "*)(NIL) ~`!@#$^&*()_+-=[]{};'<>?,./", true},
	{`o"brien\x@example.test`, "obrienpw", false},
	{"ctl@example.test", "tab\there\x01", false},
}

// startRealDovecot starts Dovecot with the auth listener, every login
// character allowed (auth_username_chars empty), 127.0.0.1 trusted for
// IMAP ID, and an optional policy server.
func startRealDovecot(t testing.TB, policyURL string) *harness.Dovecot {
	t.Helper()
	users := map[string]string{}
	for _, u := range realUsers {
		users[u.login] = u.password
	}
	return harness.StartDovecot(t, harness.DovecotOptions{
		Users:           users,
		AuthListener:    true,
		TrustedNetworks: "127.0.0.1/32",
		PolicyURL:       policyURL,
		Extra:           "auth_username_chars =\n",
	})
}

// addrs hands out distinct 127.<block>.x.y client addresses, so that
// Dovecot's per-address penalty after a failure never slows another case.
type addrs struct {
	mu   sync.Mutex
	next netip.Addr
}

func newAddrs(block byte) *addrs {
	return &addrs{next: netip.AddrFrom4([4]byte{127, block, 0, 1})}
}

func (a *addrs) get() netip.Addr {
	a.mu.Lock()
	defer a.mu.Unlock()
	ip := a.next
	a.next = a.next.Next()
	return ip
}

type verifier interface {
	Verify(ctx context.Context, r *Request) (bool, error)
}

// TestRealLogins: correct, wrong and unknown for every user, through the
// Dovecot auth service (TCP and unix socket) and through IMAP LOGIN (with
// and without ID).
func TestRealLogins(t *testing.T) {
	dc := startRealDovecot(t, "")
	var logs logBuffer
	// The verifiers' own bound is raised to the test's 30 s: this test
	// checks the answers, and some thirty logins at once (each wrong one
	// held by Dovecot's failure delay) on a loaded machine can pass the
	// 10 s default (a CI run at load 12 did).
	const slow = 25 * time.Second
	dtcp := NewDovecot(dc.AuthAddr, DovecotOptions{Timeout: slow}, logs.logger())
	dunix := NewDovecot(dc.AuthSocket, DovecotOptions{Timeout: slow}, logs.logger())
	// Cleanup, not defer: the parallel subtests run after this function
	// returns.
	t.Cleanup(func() { dtcp.Close(); dunix.Close() })
	backends := []struct {
		name  string
		v     verifier
		block byte
	}{
		{"dovecot-tcp", dtcp, 10},
		{"dovecot-unix", dunix, 11},
		{"imap-id", NewIMAP(dc.IMAPAddr, IMAPOptions{SendID: true, Timeout: slow}), 12},
		// Without ID every login comes from 127.0.0.1 and shares
		// Dovecot's penalty: correct passwords only, then one wrong one
		// (in its own test below).
		{"imap", NewIMAP(dc.IMAPAddr, IMAPOptions{Timeout: slow}), 13},
	}
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			t.Parallel()
			ips := newAddrs(be.block)
			var wg sync.WaitGroup
			for _, u := range realUsers {
				type tcase struct {
					what, login, password string
					want                  bool
				}
				cases := []tcase{{"correct", u.login, u.password, u.known}}
				if be.name == "imap" && !u.known {
					continue
				}
				if be.name != "imap" {
					cases = append(cases,
						tcase{"wrong", u.login, u.password + "x", false},
						tcase{"unknown user", "nobody-" + u.login, u.password, false})
				}
				for _, tc := range cases {
					wg.Go(func() {
						client := ips.get()
						r := &Request{Service: "imap", Login: tc.login, Password: tc.password, Client: client, Session: "mgtest"}
						ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
						defer cancel()
						ok, err := be.v.Verify(ctx, r)
						if ok != tc.want || err != nil {
							t.Errorf("%s %q/%q: %v, %v; want %v", tc.what, tc.login, tc.password, ok, err, tc.want)
						}
						if strings.ContainsAny(tc.login, `"\`) && be.name != "imap" {
							// Dovecot cannot find it, but it must have
							// received it intact, from the client address.
							waitLog(t, dc, "passwd-file("+tc.login+","+client.String()+",")
						}
					})
				}
			}
			wg.Wait()
			if be.name == "imap" {
				// One wrong password, last: from 127.0.0.1 it would
				// delay every later login there.
				ok, err := be.v.Verify(context.Background(), &Request{Login: "alice@example.test", Password: "wrong"})
				if ok || err != nil {
					t.Errorf("wrong password without ID: %v, %v; want false", ok, err)
				}
			}
		})
	}
	for _, u := range realUsers {
		noSecret(t, "verifier log", logs.String(), &Request{Login: u.login, Password: u.password})
	}
}

// TestRealConcurrent: 20 verifications on one connection, the wrong ones
// sent first. Dovecot holds each failure back by about 2 s
// (auth_failure_delay); the correct ones must not wait for them.
func TestRealConcurrent(t *testing.T) {
	dc := startRealDovecot(t, "")
	d := NewDovecot(dc.AuthAddr, DovecotOptions{}, nil)
	defer d.Close()
	// Connect first, so the measurement is of requests only.
	if ok, err := d.Verify(context.Background(), &Request{Service: "smtp", Login: "alice@example.test", Password: "alicepw", Client: netip.MustParseAddr("127.0.20.1")}); !ok || err != nil {
		t.Fatalf("warm-up: %v, %v", ok, err)
	}
	type result struct {
		want, got bool
		err       error
		took      time.Duration
	}
	results := make([]result, 20)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range results {
		right := i >= 10 // 0-9 wrong, 10-19 right; the wrong ones go first
		r := &Request{Service: "smtp", Login: "bob@example.test", Password: "Bob-Secret-1701", Client: netip.AddrFrom4([4]byte{127, 21, byte(i), 1})}
		if !right {
			r.Password = fmt.Sprintf("Bob-Guess-%d", i)
		}
		wg.Go(func() {
			ok, err := d.Verify(context.Background(), r)
			results[i] = result{want: right, got: ok, err: err, took: time.Since(start)}
		})
		if i == 9 {
			// Let the wrong ones reach Dovecot before the right ones.
			time.Sleep(20 * time.Millisecond)
		}
	}
	wg.Wait()
	var slowestRight, fastestWrong time.Duration = 0, time.Hour
	for i, r := range results {
		if r.got != r.want || r.err != nil {
			t.Errorf("request %d: %v, %v; want %v", i, r.got, r.err, r.want)
		}
		if r.want {
			slowestRight = max(slowestRight, r.took)
		} else {
			fastestWrong = min(fastestWrong, r.took)
		}
	}
	t.Logf("slowest correct answer %v after start, fastest wrong one %v", slowestRight.Round(time.Millisecond), fastestWrong.Round(time.Millisecond))
	if slowestRight >= fastestWrong || slowestRight > time.Second {
		t.Errorf("correct passwords waited for wrong ones: slowest correct %v, fastest wrong %v", slowestRight, fastestWrong)
	}
	if fastestWrong < 500*time.Millisecond {
		t.Errorf("the fastest wrong answer took %v: Dovecot's failure delay did not apply, so this test shows nothing", fastestWrong)
	}
	if st := d.Stats(); st.Connects != 1 {
		t.Errorf("stats %+v: want every request on one connection", st)
	}
}

// policyCall is one body the fake auth policy server received.
type policyCall struct {
	Command string
	Body    map[string]any
}

// TestRealClientAddress: the client address reaches Dovecot — as rip of
// the auth request (its log and its auth policy server see it), and via
// IMAP ID x-originating-ip from a login_trusted_networks address.
func TestRealClientAddress(t *testing.T) {
	var (
		mu    sync.Mutex
		calls []policyCall
	)
	policy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		var body map[string]any
		json.Unmarshal(b, &body)
		mu.Lock()
		calls = append(calls, policyCall{r.URL.Query().Get("command"), body})
		mu.Unlock()
		io.WriteString(w, `{"status":0}`)
	}))
	defer policy.Close()
	dc := startRealDovecot(t, policy.URL+"/")
	d := NewDovecot(dc.AuthAddr, DovecotOptions{}, nil)
	defer d.Close()
	ctx := context.Background()

	// Through the auth service: a wrong and a correct password.
	wrongIP, rightIP := netip.MustParseAddr("127.0.30.7"), netip.MustParseAddr("127.0.30.8")
	if ok, err := d.Verify(ctx, &Request{Service: "smtp", Login: "alice@example.test", Password: "nope", Client: wrongIP, ClientPort: 40001, Session: "mgrip1"}); ok || err != nil {
		t.Fatalf("wrong: %v, %v", ok, err)
	}
	if ok, err := d.Verify(ctx, &Request{Service: "smtp", Login: "alice@example.test", Password: "alicepw", Client: rightIP, TLS: true, Session: "mgrip2"}); !ok || err != nil {
		t.Fatalf("right: %v, %v", ok, err)
	}
	waitLog(t, dc, "passwd-file(alice@example.test,127.0.30.7,<mgrip1>): Password mismatch")

	// Through IMAP with ID from 127.0.0.1, which is trusted.
	m := NewIMAP(dc.IMAPAddr, IMAPOptions{SendID: true})
	idWrong, idRight := netip.MustParseAddr("127.0.31.7"), netip.MustParseAddr("127.0.31.8")
	if ok, err := m.Verify(ctx, &Request{Login: "alice@example.test", Password: "nope", Client: idWrong, ClientPort: 40002}); ok || err != nil {
		t.Fatalf("imap wrong: %v, %v", ok, err)
	}
	if ok, err := m.Verify(ctx, &Request{Login: "alice@example.test", Password: "alicepw", Client: idRight}); !ok || err != nil {
		t.Fatalf("imap right: %v, %v", ok, err)
	}
	waitLog(t, dc, "passwd-file(alice@example.test,127.0.31.7,")
	waitLog(t, dc, "Login: user=<alice@example.test>, method=PLAIN, rip=127.0.31.8")
	// Without ID, Dovecot sees mailgate's own address.
	noID, plainIP := NewIMAP(dc.IMAPAddr, IMAPOptions{}), netip.MustParseAddr("127.0.32.8")
	if ok, err := noID.Verify(ctx, &Request{Login: "alice@example.test", Password: "alicepw", Client: plainIP}); !ok || err != nil {
		t.Fatalf("imap without ID: %v, %v", ok, err)
	}
	time.Sleep(100 * time.Millisecond)
	if strings.Contains(dc.Log(), plainIP.String()) {
		t.Errorf("Dovecot's log names %s although no ID was sent", plainIP)
	}

	// The policy server saw the real client addresses too.
	mu.Lock()
	defer mu.Unlock()
	seen := map[string]bool{}
	for _, c := range calls {
		seen[fmt.Sprintf("%s %v %v %v", c.Command, c.Body["protocol"], c.Body["remote"], c.Body["session_id"])] = true
	}
	for _, want := range []string{
		"allow smtp 127.0.30.7 mgrip1", "report smtp 127.0.30.7 mgrip1",
		"allow smtp 127.0.30.8 mgrip2", "report smtp 127.0.30.8 mgrip2",
		"allow imap 127.0.31.8", // session_id is Dovecot's own here
	} {
		found := seen[want]
		for k := range seen {
			if strings.HasPrefix(k, want+" ") {
				found = true
			}
		}
		if !found {
			t.Errorf("the policy server never saw %q; saw %v", want, slices.Sorted(maps.Keys(seen)))
		}
	}
}

// waitLog waits up to 5 s for Dovecot's log to contain s.
func waitLog(t *testing.T, dc *harness.Dovecot, s string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(dc.Log(), s) {
		if time.Now().After(deadline) {
			t.Errorf("Dovecot's log lacks %q:\n%s", s, dc.Log())
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRealRestart: with Dovecot stopped, Verify is an error (never a wrong
// password); once it runs again, the verifier reconnects by itself.
func TestRealRestart(t *testing.T) {
	dc := startRealDovecot(t, "")
	var logs logBuffer
	d := NewDovecot(dc.AuthAddr, DovecotOptions{Timeout: 5 * time.Second}, logs.logger())
	defer d.Close()
	m := NewIMAP(dc.IMAPAddr, IMAPOptions{Timeout: 5 * time.Second})
	r := &Request{Service: "imap", Login: "alice@example.test", Password: "alicepw", Client: netip.MustParseAddr("127.0.40.1")}
	ctx := context.Background()
	for _, v := range []verifier{d, m} {
		if ok, err := v.Verify(ctx, r); !ok || err != nil {
			t.Fatalf("%T before the stop: %v, %v", v, ok, err)
		}
	}
	dc.Stop(t)
	for _, v := range []verifier{d, m} {
		ok, err := v.Verify(ctx, r)
		if ok || err == nil {
			t.Fatalf("%T with Dovecot stopped: %v, %v; want an error", v, ok, err)
		}
		t.Logf("%T with Dovecot stopped: %v", v, err)
		noSecret(t, "error", err.Error(), r)
	}
	dc.Restart(t)
	for _, v := range []verifier{d, m} {
		if ok, err := v.Verify(ctx, r); !ok || err != nil {
			t.Fatalf("%T after the restart: %v, %v", v, ok, err)
		}
	}
	if st := d.Stats(); st.Connects != 2 || st.Errors != 1 || st.OK != 2 {
		t.Errorf("stats %+v: want 2 connects, 1 error, 2 ok", st)
	}
	if !strings.Contains(logs.String(), "dovecot auth connection") {
		t.Errorf("the lost connection was not logged:\n%s", logs.String())
	}
}

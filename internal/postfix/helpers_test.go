package postfix

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/abuse"
	"mailgate/internal/policy"
	"mailgate/internal/relay"
	"mailgate/internal/rules"
	"mailgate/internal/sendlimit"
)

// testNow is the tests' clock.
var testNow = time.Date(2026, 11, 22, 3, 58, 45, 0, time.UTC)

// rule parses "ACCOUNT SERVICE ACTION MATCH" ("global" as the account for
// the global lists), e.g. "alice@example.test smtp deny 127.0.0.9".
func rule(t testing.TB, id int64, spec string) rules.Rule {
	t.Helper()
	f := strings.Fields(spec)
	if len(f) != 4 {
		t.Fatalf("bad rule spec %q", spec)
	}
	r := rules.Rule{ID: id, Account: f[0]}
	if f[0] == "global" {
		r.Scope, r.Account = rules.ScopeGlobal, ""
	}
	var err error
	if r.Service, err = rules.ParseService(f[1]); err != nil {
		t.Fatal(err)
	}
	if r.Action, err = rules.ParseAction(f[2]); err != nil {
		t.Fatal(err)
	}
	if err := r.SetMatch(f[3]); err != nil {
		t.Fatal(err)
	}
	if err := r.Validate(); err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	return r
}

// newEngine builds a real engine over the rules in specs, with an abuse
// tracker holding address bans on the prefixes in bans.
func newEngine(t testing.TB, specs []string, bans []string) *policy.Engine {
	t.Helper()
	return newEngineMsgs(t, specs, bans, nil)
}

// newEngineMsgs is newEngine with the refusal texts msgs.
func newEngineMsgs(t testing.TB, specs []string, bans []string, msgs policy.Messages) *policy.Engine {
	t.Helper()
	idx := rules.NewIndex()
	for i, s := range specs {
		r := rule(t, int64(i+1), s)
		idx.Add(&r)
	}
	e := policy.New(idx, msgs)
	tr := abuse.New(abuse.DefaultConfig())
	for _, b := range bans {
		if _, err := tr.AddBan(abuse.Ban{Kind: abuse.BanAddr, Prefix: netip.MustParsePrefix(b), Expires: testNow.Add(time.Hour)}, testNow.Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	return e.WithAbuse(tr, false, time.Minute, 5*time.Second)
}

// fakePermits is a permit table: valid permits by prefix, the longest
// matching prefix first, as relay.Table answers.
type fakePermits struct {
	mu      sync.Mutex
	permits []relay.Permit
	checks  int
}

func (f *fakePermits) add(prefix, login string) {
	p := netip.MustParsePrefix(prefix)
	f.permits = append(f.permits, relay.Permit{
		Prefix: p, Login: login, Service: rules.IMAP, Door: "dovecot",
		Granted: testNow.Add(-10 * time.Minute), Expires: testNow.Add(20 * time.Minute), Logins: 1,
	})
}

func (f *fakePermits) Check(addr netip.Addr, now time.Time) (relay.Permit, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.checks++
	best := -1
	for i, p := range f.permits {
		if p.Prefix.Contains(addr) && now.Before(p.Expires) && (best < 0 || p.Prefix.Bits() > f.permits[best].Prefix.Bits()) {
			best = i
		}
	}
	if best < 0 {
		return relay.Permit{}, false
	}
	return f.permits[best], true
}

// fakeLimits lets each listed login have max recipients, then answers
// the limit's name; it records every call.
type fakeLimits struct {
	mu    sync.Mutex
	max   map[string]int
	name  map[string]string
	used  map[string]int
	calls strings.Builder
}

func newFakeLimits() *fakeLimits {
	return &fakeLimits{max: map[string]int{}, name: map[string]string{}, used: map[string]int{}}
}

func (f *fakeLimits) set(login string, max int, limit string) {
	f.max[login], f.name[login] = max, limit
}

func (f *fakeLimits) Rcpt(login, instance string, now time.Time) sendlimit.Exceeded {
	f.mu.Lock()
	defer f.mu.Unlock()
	fmt.Fprintf(&f.calls, "login=%s instance=%s -> ", login, instance)
	max, ok := f.max[login]
	if ok && f.used[login] >= max {
		fmt.Fprintf(&f.calls, "%s\n", f.name[login])
		return sendlimit.Exceeded{Limit: f.name[login], Max: max, Used: f.used[login]}
	}
	f.used[login]++
	f.calls.WriteString("ok\n")
	return sendlimit.Exceeded{}
}

func (f *fakeLimits) log() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls.String()
}

// syncBuffer is a bytes.Buffer for logs written from server goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testLogger writes slog text without the time, and with the host only
// of "remote" (the client's port changes from run to run).
func testLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{
		Level: slog.LevelDebug,
		ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
			if len(groups) == 0 && a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			if a.Key == "remote" {
				if h, _, err := net.SplitHostPort(a.Value.String()); err == nil {
					return slog.String("remote", h)
				}
			}
			return a
		},
	}))
}

// env is a handler over a real engine, fake permits and limits, with its
// logs.
type env struct {
	h         *Handler
	permits   *fakePermits
	limits    *fakeLimits
	decisions syncBuffer
	diags     syncBuffer
}

func newEnv(t testing.TB, cfg Config, e Engine) *env {
	t.Helper()
	ev := &env{permits: &fakePermits{}, limits: newFakeLimits()}
	if cfg.Now == nil {
		cfg.Now = func() time.Time { return testNow }
	}
	ev.h = NewHandler(cfg, e, ev.permits, ev.limits, policy.NewDecisionLog(&ev.decisions), testLogger(&ev.diags))
	return ev
}

// startServer serves the handler's doors on loopback listeners until
// the test ends. kind is "policy", "relay" (relay-only policy),
// "socketmap" or "tcp:MAP".
func startServer(t testing.TB, h *Handler, log *slog.Logger, kind string) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(h, log)
	done := make(chan error, 1)
	go func() {
		switch {
		case kind == "policy":
			done <- s.ServePolicy(ln, false)
		case kind == "relay":
			done <- s.ServePolicy(ln, true)
		case kind == "socketmap":
			done <- s.ServeSocketmap(ln)
		case strings.HasPrefix(kind, "tcp:"):
			done <- s.ServeTCPTable(ln, strings.TrimPrefix(kind, "tcp:"))
		default:
			done <- fmt.Errorf("unknown listener kind %q", kind)
		}
	}()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

// dialFrom connects to addr from the loopback address src (127.0.0.x), so
// that each scenario has its own source address.
func dialFrom(t testing.TB, src, addr string) *net.TCPConn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

// capture is the unauthenticated RCPT request captured from Postfix
// 3.7.11 (protocols.md §3.2), attribute order as sent.
const capture = `request=smtpd_access_policy
protocol_state=RCPT
protocol_name=ESMTP
client_address=127.0.0.91
client_name=unknown
client_port=50741
reverse_client_name=unknown
server_address=127.0.0.1
server_port=10025
helo_name=client.example.test
sender=sender@remote.test
recipient=bob@example.test
recipient_count=0
queue_id=
instance=178f.6b02554c.a8191.0
size=0
etrn_domain=
stress=
sasl_method=
sasl_username=
sasl_sender=
ccert_subject=
ccert_issuer=
ccert_fingerprint=
ccert_pubkey_fingerprint=
encryption_protocol=
encryption_cipher=
encryption_keysize=0
policy_context=

`

// pfRequest is the capture with some attributes replaced: keys are
// attribute names, values their new values.
func pfRequest(set map[string]string) string {
	var b strings.Builder
	for line := range strings.Lines(capture) {
		name, _, ok := strings.Cut(strings.TrimSuffix(line, "\n"), "=")
		if v, repl := set[name]; ok && repl {
			b.WriteString(name + "=" + v + "\n")
			continue
		}
		b.WriteString(line)
	}
	return b.String()
}

package nginxauth

import (
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/password"
	"mailgate/internal/policy"
)

// countingPolicy is the real policy, counting its calls.
type countingPolicy struct {
	c *password.Checker
	n int
}

func (p *countingPolicy) Weak(pw, login string) bool { p.n++; return p.c.Weak(pw, login) }

type fakeFlags struct {
	mu     sync.Mutex
	marked map[string]time.Time
	clears []string
}

func (f *fakeFlags) Mark(login string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.marked == nil {
		f.marked = map[string]time.Time{}
	}
	f.marked[login] = now
}

func (f *fakeFlags) Clear(login string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.marked, login)
	f.clears = append(f.clears, login)
}

const strongPW = "vK8#qm2Lp0zR"

func weakEnv(t *testing.T, refuse bool) (*env, *countingPolicy, *fakeFlags) {
	pol := &countingPolicy{c: password.NewChecker(password.Default())}
	fl := &fakeFlags{}
	ev := newEnv(t, newEngine(t), nil, func(c *Config) {
		c.Password, c.Flags, c.RefuseWeakSMTP = pol, fl, refuse
	})
	ev.v.users["dave@example.test"] = strongPW
	return ev, pol, fl
}

// TestWeakPasswordFlag: a correct weak password logs in, with
// weak_password=1 on its auth=success line and the login marked; a
// correct strong one clears the flag; the password is in no log.
func TestWeakPasswordFlag(t *testing.T) {
	ev, pol, fl := weakEnv(t, false)
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.0.9", 1), okIMAP)
	if !strings.Contains(ev.decisions.String(), "auth=success door=nginx service=imap login=alice@example.test ip=127.0.0.9 weak_password=1\n") {
		t.Fatalf("no weak_password=1 on the success line:\n%s", ev.decisions.String())
	}
	if _, ok := fl.marked["alice@example.test"]; !ok || pol.n != 1 {
		t.Fatalf("marked %v, policy calls %d", fl.marked, pol.n)
	}
	ev.decisions.Reset()
	check(t, ev.login(t, "imap", "dave@example.test", strongPW, "127.0.0.9", 1), okIMAP)
	if strings.Contains(ev.decisions.String(), "weak_password") || len(fl.clears) != 1 {
		t.Fatalf("strong password: %q, clears %v", ev.decisions.String(), fl.clears)
	}
	// SMTP without refuse_weak_submission: OK, flagged.
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.0.9", 1), want{status: "OK", server: "127.0.0.1", port: "10025"})
	for _, s := range []string{ev.decisions.String(), ev.diags.String()} {
		if strings.Contains(s, "alicepw") || strings.Contains(s, strongPW) {
			t.Fatalf("a password in the logs:\n%s", s)
		}
	}
}

// TestWrongPasswordUnchanged: a wrong password is never checked against
// the policy, and its answer is the same, header for header, with the
// policy on or off.
func TestWrongPasswordUnchanged(t *testing.T) {
	plain := newEnv(t, newEngine(t), nil, nil)
	ev, pol, fl := weakEnv(t, true)
	for _, proto := range []string{"imap", "smtp"} {
		for _, pw := range []string{"wrong", "Wr0ng-but-Strong#9x"} {
			a := plain.login(t, proto, "alice@example.test", pw, "127.0.0.10", 1)
			b := ev.login(t, proto, "alice@example.test", pw, "127.0.0.10", 1)
			if a.Code != b.Code || !equalHeaders(a.Result().Header, b.Result().Header) {
				t.Fatalf("%s %q: answers differ:\n%v\n%v", proto, pw, a.Result().Header, b.Result().Header)
			}
		}
	}
	if pol.n != 0 || len(fl.marked) != 0 || len(fl.clears) != 0 {
		t.Fatalf("wrong passwords reached the policy: %d calls, %v, %v", pol.n, fl.marked, fl.clears)
	}
}

func equalHeaders(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if strings.Join(v, "\x00") != strings.Join(b[k], "\x00") {
			return false
		}
	}
	return true
}

// TestRefuseWeakSubmission: with RefuseWeakSMTP a correct weak password
// is refused for SMTP with the weak_password text and a deny line, and
// still logs in over IMAP; a strong one sends.
func TestRefuseWeakSubmission(t *testing.T) {
	ev, _, _ := weakEnv(t, true)
	msg := policy.DefaultMessages()[policy.ReasonWeakPassword.String()]
	check(t, ev.login(t, "smtp", "alice@example.test", "alicepw", "127.0.0.11", 1), want{status: msg, code: DefaultSMTPErrorCode})
	if !strings.Contains(ev.decisions.String(), "decision=deny reason=weak_password rule=- door=nginx service=smtp login=alice@example.test ip=127.0.0.11 weak_password=1\n") {
		t.Fatalf("decision log:\n%s", ev.decisions.String())
	}
	check(t, ev.login(t, "imap", "alice@example.test", "alicepw", "127.0.0.11", 1), okIMAP)
	check(t, ev.login(t, "smtp", "dave@example.test", strongPW, "127.0.0.11", 1), want{status: "OK", server: "127.0.0.1", port: "10025"})
}

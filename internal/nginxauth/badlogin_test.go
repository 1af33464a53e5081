package nginxauth

import (
	"strings"
	"testing"
)

// A login no account can have (over 256 bytes here) is never checked,
// counted, banned or stored: the request is refused as malformed.
func TestBadLoginRefused(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	long := strings.Repeat("a", 390) + "@example.test"
	w := ev.login(t, "imap", long, "alicepw", "192.0.2.7", 1)
	check(t, w, want{status: BadRequestMessage})
	if ev.v.n() != 0 || len(ev.reports) != 0 {
		t.Errorf("password checks %d, reports %d; want none", ev.v.n(), len(ev.reports))
	}
	ev.login(t, "imap", "alice@example.test", "wrong", "192.0.2.7", 1)
	if ev.v.n() != 1 || len(ev.reports) != 1 {
		t.Errorf("an ordinary login: password checks %d, reports %d; want 1, 1", ev.v.n(), len(ev.reports))
	}
}

// An Auth-User that is not UTF-8 once unescaped gets what a wrong password
// gets (with its Auth-Wait) and a bad_login line; it is never checked,
// counted or handed to the engine.
func TestBadLoginNotUTF8(t *testing.T) {
	ev := newEnv(t, newEngine(t), nil, nil)
	for _, user := range []string{"bob%FF%FE@example.test", "Bob%FF@Example.test"} {
		w := ev.login(t, "imap", user, "bobpw", "192.0.2.8", 1)
		check(t, w, want{status: DefaultFailMessage, wait: "3"})
	}
	if ev.v.n() != 0 || len(ev.reports) != 0 {
		t.Errorf("password checks %d, reports %d; want none", ev.v.n(), len(ev.reports))
	}
	if d := ev.decisions.String(); strings.Count(d, "reason=bad_login") != 2 {
		t.Errorf("decisions:\n%s", d)
	}
}

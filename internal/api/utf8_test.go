package api

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// TestNotUTF8Refused: a body with bytes that are not UTF-8 is refused
// with 400 on the hook socket, and grants nothing. encoding/json used to
// turn each bad byte into U+FFFD, so "bob\xff" got a permit (and, on the
// admin API, a ban or a rule) under the login "bob\uFFFD", which no
// client ever sent.
func TestNotUTF8Refused(t *testing.T) {
	called := 0
	onLogin := func(login string, svc rules.Service, addr netip.Addr, door string, now time.Time) (relay.Permit, relay.Outcome) {
		called++
		return relay.Permit{}, relay.Granted
	}
	h := HookHandler(onLogin, nil)
	for _, body := range []string{
		`{"login":"bob` + "\xff" + `","ip":"192.0.2.52","service":"imap"}`,
		`{"login":"bob","ip":"192.0.2.52","service":"imap","door":"h` + "\xc3" + `"}`,
		"{\"login\":\"bob\xed\xa0\x80\",\"ip\":\"192.0.2.52\",\"service\":\"imap\"}", // an encoded surrogate
	} {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/logins", strings.NewReader(body)))
		if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "UTF-8") {
			t.Errorf("%q: got %d %s, want 400 naming UTF-8", body, w.Code, w.Body)
		}
	}
	if called != 0 {
		t.Errorf("onLogin called %d times for bodies that are not UTF-8", called)
	}
	var v struct{ Login string }
	if err := strictUnmarshal([]byte(`{"Login":"bob`+"\xff"+`"}`), &v); err == nil {
		t.Errorf("strictUnmarshal decoded a body that is not UTF-8 as %q", v.Login)
	}
	if err := strictUnmarshal([]byte(`{"Login":"bób\u00a0"}`), &v); err != nil || v.Login != "bób\u00a0" {
		t.Errorf("valid UTF-8: %q %v", v.Login, err)
	}
}

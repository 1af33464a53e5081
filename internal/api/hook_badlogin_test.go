package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"mailgate/internal/relay"
	"mailgate/internal/rules"
)

// The post-login hook refuses a login no account can have (over 320
// bytes) with a 400 naming the field, a huge body with a 413; the daemon
// never hears of either.
func TestHookRefusesLongLogin(t *testing.T) {
	calls := 0
	h := HookHandler(func(string, rules.Service, netip.Addr, string, time.Time) (relay.Permit, relay.Outcome) {
		calls++
		return relay.Permit{}, relay.NotGranting
	}, slog.New(slog.DiscardHandler))
	for _, n := range []int{rules.MaxAccountLen + 1, 400, 10_000} {
		login := strings.Repeat("a", n-len("@example.test")) + "@example.test"
		body := `{"login":"` + login + `","ip":"192.0.2.7","service":"imap"}`
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1/logins", strings.NewReader(body)))
		want := http.StatusBadRequest
		if n == 10_000 {
			want = http.StatusRequestEntityTooLarge
		}
		if w.Code != want || want == http.StatusBadRequest && !strings.Contains(w.Body.String(), "login") {
			t.Errorf("%d-byte login: %d %s", n, w.Code, w.Body)
		}
	}
	if calls != 0 {
		t.Errorf("the daemon heard of %d over-long logins", calls)
	}
}

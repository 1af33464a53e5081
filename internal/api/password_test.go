package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"mailgate/internal/password"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// TestPasswordCheckAPI: POST /v1/password/check over TCP needs the
// token, answers ok/reasons/score, refuses bodies over the limit and
// passwords over password.MaxLen, is rate-limited, and never writes the
// password to the log.
func TestPasswordCheckAPI(t *testing.T) {
	st, err := store.OpenSQLite(filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var logs bytes.Buffer
	idx := rules.NewIndex()
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	const token = "0123456789abcdef"
	flags := password.NewFlags(30*24*time.Hour, 0, nil)
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	flags.Mark("alice@example.com", now.Add(-2*24*time.Hour))
	flags.Mark("old@example.com", now.Add(-20*24*time.Hour))
	srv := NewServer(NewRulebook(st, idx, nil), nil, policy.New(idx, nil), log, "test", token).
		WithPassword(password.NewChecker(password.Default()), password.NewLimiter(5), flags, func() int { return 30 })
	srv.now = func() time.Time { return now }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: srv.Handler(), ConnContext: ConnContext, ErrorLog: nil}
	go hs.Serve(ln)
	defer hs.Close()
	base := "http://" + ln.Addr().String()
	ctx := context.Background()
	const weakPW, strongPW = "Sommer2024", "vK8#qm2Lp0zR-x"

	if _, err := NewTCPClient(base, "wrong-token-xxxxxx").CheckPassword(ctx, PasswordCheck{Login: "alice@example.com", Password: weakPW}); err == nil || !strings.Contains(err.Error(), "bearer token") {
		t.Fatalf("without the token: %v", err)
	}
	c := NewTCPClient(base, token)
	res, err := c.CheckPassword(ctx, PasswordCheck{Login: "alice@example.com", Password: weakPW})
	if err != nil || res.OK || len(res.Reasons) == 0 || res.Reasons[0].Code != password.CodeTooShort {
		t.Fatalf("weak: %+v %v", res, err)
	}
	res, err = c.CheckPassword(ctx, PasswordCheck{Login: "alice@example.com", Password: strongPW})
	if err != nil || !res.OK || res.Score < 3 || res.Reasons == nil {
		t.Fatalf("strong: %+v %v", res, err)
	}
	// The wire form: reasons is a list, never null.
	raw := post(t, base+"/v1/password/check", token, `{"login":"bob@example.com","password":"`+strongPW+`"}`)
	if raw.code != 200 || !strings.Contains(raw.body, `"reasons": []`) || !strings.Contains(raw.body, `"ok": true`) {
		t.Fatalf("wire: %d %s", raw.code, raw.body)
	}
	// Too long a password: 413 with a clear error; too large a body: 413.
	long := strings.Repeat("x", password.MaxLen+1)
	if r := post(t, base+"/v1/password/check", token, `{"password":"`+long+`"}`); r.code != 413 || !strings.Contains(r.body, "longer than 1024 bytes") {
		t.Fatalf("long password: %d %s", r.code, r.body)
	}
	if r := post(t, base+"/v1/password/check", token, `{"password":"`+strings.Repeat("y", maxPasswordBody)+`"}`); r.code != 413 {
		t.Fatalf("large body: %d %s", r.code, r.body)
	}
	// A bad body: 400, not quoting it.
	if r := post(t, base+"/v1/password/check", token, `{"password":"`+weakPW+`", "x":1}`); r.code != 400 || strings.Contains(r.body, weakPW) {
		t.Fatalf("bad body: %d %s", r.code, r.body)
	}
	// The rate: a burst of 10, then 429.
	var limited bool
	for range 20 {
		if r := post(t, base+"/v1/password/check", token, `{"password":"a"}`); r.code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 after 20 checks at rate 5")
	}
	// The weak list: within the days asked.
	ws, err := c.WeakLogins(ctx, 7)
	if err != nil || len(ws) != 1 || ws[0].Login != "alice@example.com" {
		t.Fatalf("weak 7 days: %+v %v", ws, err)
	}
	if ws, _ := c.WeakLogins(ctx, 0); len(ws) != 2 {
		t.Fatalf("weak default days: %+v", ws)
	}
	var ae *APIError
	if _, err := c.WeakLogins(ctx, 99999); !errors.As(err, &ae) {
		t.Fatalf("days 99999: %v", err)
	}
	for _, pw := range []string{weakPW, strongPW, long[:100]} {
		if strings.Contains(logs.String(), pw) {
			t.Fatalf("the password is in the log:\n%s", logs.String())
		}
	}
}

type rawReply struct {
	code int
	body string
}

func post(t *testing.T, url, token, body string) rawReply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	var e ErrorJSON
	json.Unmarshal(b.Bytes(), &e)
	return rawReply{resp.StatusCode, b.String()}
}

// TestPasswordAPIOff: without WithPassword both endpoints answer 409.
func TestPasswordAPIOff(t *testing.T) {
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	var ae *APIError
	if _, err := f.client.CheckPassword(context.Background(), PasswordCheck{Password: "x"}); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("check: %v", err)
	}
	if _, err := f.client.WeakLogins(context.Background(), 0); !errors.As(err, &ae) || ae.Status != http.StatusConflict {
		t.Fatalf("weak: %v", err)
	}
}

// TestPasswordHandler: the check listener serves the check, without a
// token, and nothing else of the API.
func TestPasswordHandler(t *testing.T) {
	f := start(t, filepath.Join(t.TempDir(), "m.db"))
	f.srv.WithPassword(password.NewChecker(password.Default()), nil, nil, nil)
	h := f.srv.PasswordHandler()
	for _, c := range []struct {
		method, path, body string
		code               int
	}{
		{"POST", "/v1/password/check", `{"login":"a@example.com","password":"vK8#qm2Lp0zR"}`, 200},
		{"GET", "/v1/rules", "", 404},
		{"GET", "/v1/password/weak", "", 404},
		{"POST", "/v1/bans", `{}`, 404},
		{"GET", "/v1/password/check", "", 405},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader(c.body)))
		if rec.Code != c.code {
			t.Errorf("%s %s: %d, want %d: %s", c.method, c.path, rec.Code, c.code, rec.Body)
		}
	}
}

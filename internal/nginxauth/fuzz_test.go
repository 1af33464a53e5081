package nginxauth

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"

	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
)

// yesVerifier accepts every password: with it, only the door itself can
// keep a malformed request from getting OK.
type yesVerifier struct{}

func (yesVerifier) Verify(context.Context, *passcheck.Request) (bool, error) { return true, nil }

// FuzzParseRequest feeds raw request bytes through net/http's request
// reader to ParseRequest and to the whole handler (an engine with no
// rules, a verifier that accepts everything, no secret). Neither may
// panic; an accepted request must respect the size limits and have a
// normalized client address; a request ParseRequest refuses must never
// get OK or a backend; no reply header may hold CR or LF. The seed
// corpus is in testdata/fuzz/FuzzParseRequest (the captures of
// protocols.md §2.3 and edge cases).
func FuzzParseRequest(f *testing.F) {
	f.Add([]byte(nginxRequest("plain", "imap", "alice@example.test", "alicepw", "127.0.0.71", 1) + "X-Auth-Key: shared-secret\r\n\r\n"))
	f.Add([]byte(nginxRequest("none", "smtp", "", "", "127.0.0.104", 1) + "Auth-SMTP-Helo: mta.remote.test\r\n\r\n"))
	h := NewHandler(Config{Backends: testBackends, Verify: map[string]bool{"imap": true, "pop3": true}},
		policy.New(newEngine(f, "global all deny 10.0.0.0/8").Index(), policy.Messages{"global_deny": "{login}"}), yesVerifier{}, nil, nil)
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw)))
		if err != nil {
			return
		}
		req, perr := ParseRequest(r.Header)
		if perr == nil {
			if len(req.User) > MaxLoginLen || len(req.Pass) > MaxPasswordLen || len(req.ClientHost) > MaxInfoLen ||
				len(req.SMTPHelo) > MaxInfoLen || len(req.SMTPFrom) > MaxInfoLen || len(req.SMTPTo) > MaxInfoLen {
				t.Fatalf("over a size limit: %+v", req)
			}
			if !req.Client.IsValid() || req.Client.Is4In6() || req.Client.Zone() != "" || req.Attempt < 1 {
				t.Fatalf("client %v attempt %d", req.Client, req.Attempt)
			}
			if req.Method == MethodNone && req.Protocol != SMTP {
				t.Fatalf("method none over %v", req.Protocol)
			}
			if strings.ContainsFunc(req.User, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
				t.Fatalf("control character in user %q", req.User)
			}
		} else {
			if len(perr.Error()) > 1000 {
				t.Fatalf("error of %d bytes", len(perr.Error()))
			}
			if p := r.Header.Get("Auth-Pass"); len(p) >= 8 && strings.Contains(perr.Error(), p) {
				t.Fatalf("error quotes the password: %v", perr)
			}
		}

		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		hd := w.Result().Header
		st := hd.Get("Auth-Status")
		switch {
		case st == "":
			t.Fatalf("no Auth-Status (HTTP %d)", w.Code)
		case perr != nil && (st == "OK" || hd.Get("Auth-Server") != ""):
			t.Fatalf("OK for a malformed request (%v)", perr)
		case perr != nil && w.Code != http.StatusBadRequest:
			t.Fatalf("HTTP %d for a malformed request", w.Code)
		case st == "OK" && (hd.Get("Auth-Server") == "" || hd.Get("Auth-Port") == ""):
			t.Fatalf("OK without a backend: %v", hd)
		case st == "WAIT" || len(st) > maxMessage || !utf8.ValidString(st):
			t.Fatalf("Auth-Status %q", st)
		}
		for k, vs := range hd {
			for _, v := range vs {
				if strings.ContainsAny(v, "\r\n") {
					t.Fatalf("%s: %q", k, v)
				}
			}
		}
	})
}

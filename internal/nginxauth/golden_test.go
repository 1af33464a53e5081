package nginxauth

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/passcheck"
	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected replies, verifier calls, decisions and diagnostics in testdata/*.txtar")

// The golden transcripts in testdata/*.txtar replay requests shaped like
// the ones captured from nginx 1.22.1 (protocols.md §2.3) through a real
// policy.Engine and a fake password verifier. Each file is a txtar
// archive:
//
//	comment: what the transcript shows
//	-- config --      optional "key = value" lines: verify (comma list of
//	                  protocols, may be empty), fail_wait (a duration),
//	                  max_wait_attempts, verifier (ok or down)
//	-- rules --       one rule a line: ID ACCOUNT SERVICE ACTION MATCH
//	                  ("global" as ACCOUNT for the global lists)
//	-- users --       the verifier's accounts: LOGIN PASSWORD
//	-- request --     a raw request as nginx sends it
//	-- reply --       the expected HTTP status and reply headers
//	(request/reply pairs repeat, in order)
//	-- verifier --    the password checks made (never the password)
//	-- decisions --   the decision log written during the transcript
//	-- diagnostics -- the diagnostic log (slog text, without time)
//
// The shared secret is "shared-secret" in X-Auth-Key (the captures'), the
// backends are imap 127.0.0.1:10143, pop3 127.0.0.1:10110 and smtp
// 127.0.0.1:10025, and the clock is fixed. Run `go test -run TestGolden
// -update` to rewrite the reply, verifier, decisions and diagnostics
// sections, and review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txtar transcripts")
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			runGolden(t, file)
		})
	}
}

// goldenVerifier is the transcripts' password checker: it writes one line
// per call, without the password.
type goldenVerifier struct {
	mu    sync.Mutex
	users map[string]string
	down  bool
	log   strings.Builder
}

func (g *goldenVerifier) Verify(ctx context.Context, r *passcheck.Request) (bool, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fmt.Fprintf(&g.log, "service=%s login=%q client=%s", r.Service, r.Login, r.Client)
	if r.ClientPort != 0 {
		fmt.Fprintf(&g.log, " port=%d", r.ClientPort)
	}
	if r.Local.IsValid() {
		fmt.Fprintf(&g.log, " local=%s", r.Local)
	}
	fmt.Fprintf(&g.log, " tls=%t -> ", r.TLS)
	if g.down {
		g.log.WriteString("error\n")
		return false, errors.New("dial unix /run/dovecot/auth-client: connect: no such file or directory")
	}
	pw, ok := g.users[r.Login]
	ok = ok && pw == r.Password
	if ok {
		g.log.WriteString("ok\n")
	} else {
		g.log.WriteString("wrong\n")
	}
	return ok, nil
}

func runGolden(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ar := txtar.Parse(string(data))

	idx := rules.NewIndex()
	ver := &goldenVerifier{users: map[string]string{}}
	cfg := Config{
		Secret:   testSecret,
		Backends: testBackends,
		Verify:   map[string]bool{"imap": true, "pop3": true, "smtp": true},
		FailWait: 3 * time.Second,
		Now:      func() time.Time { return testNow },
		Nonce:    testNonce,
	}
	out := txtar.Archive{Comment: ar.Comment}
	var requests []string
	secrets := []string{}
	for _, f := range ar.Files {
		switch f.Name {
		case "config":
			goldenConfig(t, f.Data, &cfg, ver)
			out.Files = append(out.Files, f)
		case "rules":
			for line := range strings.Lines(f.Data) {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				id, spec, _ := strings.Cut(line, " ")
				n, err := strconv.ParseInt(id, 10, 64)
				if err != nil {
					t.Fatalf("rule %q: id: %v", line, err)
				}
				r := rule(t, n, spec)
				idx.Add(&r)
			}
			out.Files = append(out.Files, f)
		case "users":
			for line := range strings.Lines(f.Data) {
				line = strings.TrimSuffix(line, "\n")
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				login, pw, ok := strings.Cut(line, " ")
				if !ok {
					t.Fatalf("users: %q: want LOGIN PASSWORD", line)
				}
				ver.users[login] = pw
				secrets = append(secrets, pw)
			}
			out.Files = append(out.Files, f)
		case "request":
			requests = append(requests, f.Data)
		case "reply", "verifier", "decisions", "diagnostics":
		default:
			t.Fatalf("unknown section %q", f.Name)
		}
	}

	var decisions, diags bytes.Buffer
	log := slog.New(slog.NewTextHandler(&diags, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	h := NewHandler(cfg, policy.New(idx, nil), ver, policy.NewDecisionLog(&decisions), log)

	var replies []string
	for i, raw := range requests {
		req := mustRequest(t, raw)
		if p, err := unescape(req.Header.Get("Auth-Pass")); err == nil && len(p) >= 5 {
			secrets = append(secrets, p)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		reply := formatReply(w)
		if st := w.Result().Header.Get("Auth-Status"); st == "OK" && w.Code != 200 {
			t.Errorf("request %d: OK with HTTP %d", i+1, w.Code)
		}
		replies = append(replies, reply)
		out.Files = append(out.Files, txtar.File{Name: "request", Data: raw}, txtar.File{Name: "reply", Data: reply})
	}
	out.Files = append(out.Files,
		txtar.File{Name: "verifier", Data: ver.log.String()},
		txtar.File{Name: "decisions", Data: decisions.String()},
		txtar.File{Name: "diagnostics", Data: diags.String()})

	// Never a password in any log (DESIGN.md §6).
	for _, pw := range secrets {
		if len(pw) < 5 {
			continue // too short to search for without false alarms
		}
		for _, l := range []string{decisions.String(), diags.String(), ver.log.String()} {
			if strings.Contains(l, pw) {
				t.Errorf("password %q appears in a log:\n%s", pw, l)
			}
		}
	}

	got := txtar.Format(out)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want := txtar.Parse(string(data))
	var wantReplies []string
	var wantVer, wantDec, wantDiag string
	for _, f := range want.Files {
		switch f.Name {
		case "reply":
			wantReplies = append(wantReplies, f.Data)
		case "verifier":
			wantVer = f.Data
		case "decisions":
			wantDec = f.Data
		case "diagnostics":
			wantDiag = f.Data
		}
	}
	if len(wantReplies) != len(replies) {
		t.Fatalf("%d requests but %d expected replies (run with -update)", len(replies), len(wantReplies))
	}
	for i := range replies {
		if replies[i] != wantReplies[i] {
			t.Errorf("reply %d:\ngot:\n%s\nwant:\n%s", i+1, replies[i], wantReplies[i])
		}
	}
	for _, s := range []struct{ name, got, want string }{
		{"verifier", ver.log.String(), wantVer},
		{"decisions", decisions.String(), wantDec},
		{"diagnostics", diags.String(), wantDiag},
	} {
		if s.got != s.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", s.name, s.got, s.want)
		}
	}
	if got != string(data) && !t.Failed() {
		t.Errorf("transcript layout differs from a rewrite (run with -update and review the diff)")
	}
}

func goldenConfig(t *testing.T, s string, cfg *Config, ver *goldenVerifier) {
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			t.Fatalf("config: %q has no '='", line)
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		var err error
		switch k {
		case "verify":
			cfg.Verify = map[string]bool{}
			for p := range strings.SplitSeq(v, ",") {
				if p = strings.TrimSpace(p); p != "" {
					cfg.Verify[p] = true
				}
			}
		case "fail_wait":
			cfg.FailWait, err = time.ParseDuration(v)
		case "max_wait_attempts":
			cfg.MaxWaitAttempts, err = strconv.Atoi(v)
		case "verifier":
			ver.down = v == "down"
		default:
			t.Fatalf("config: unknown key %q", k)
		}
		if err != nil {
			t.Fatalf("config: %s: %v", k, err)
		}
	}
}

// replyOrder is the order the reply headers are shown in; others follow,
// sorted.
var replyOrder = []string{"Auth-Status", "Auth-Server", "Auth-Port", "Auth-Wait", "Auth-Error-Code"}

func formatReply(w *httptest.ResponseRecorder) string {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d\n", w.Code)
	hd := w.Result().Header
	for _, k := range replyOrder {
		for _, v := range hd[k] {
			fmt.Fprintf(&b, "%s: %s\n", k, v)
		}
	}
	var rest []string
	for k, vs := range hd {
		if slices.Contains(replyOrder, k) {
			continue
		}
		for _, v := range vs {
			rest = append(rest, k+": "+v)
		}
	}
	slices.Sort(rest)
	for _, l := range rest {
		b.WriteString(l + "\n")
	}
	return b.String()
}

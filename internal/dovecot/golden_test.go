package dovecot

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/policy"
	"mailgate/internal/rules"
	"mailgate/internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected replies, decisions and diagnostics in testdata/*.txtar")

// The golden transcripts in testdata/*.txtar replay requests captured from
// Dovecot 2.3.19.1 (protocols.md §1.6) and 2.4-shaped bodies (§1.8)
// through a real policy.Engine. Each file is a txtar archive:
//
//	comment: what the transcript shows
//	-- rules --       one rule a line: ID SCOPE ACCOUNT SERVICE ACTION MATCH
//	                  (SCOPE global|account; ACCOUNT "-" for global rules)
//	-- messages --    optional: reason=text lines overriding the refusal texts
//	-- request --     a raw HTTP/1.1 request, headers and body as Dovecot sent them
//	-- reply --       the expected status line, Content-Type and body
//	(request/reply pairs repeat, in order)
//	-- decisions --   the decision log written during the transcript
//	-- diagnostics -- the diagnostic log (slog text, without time)
//
// The handler's API key is "myapikey" (the captures' key) and the clock is
// fixed at the captures' Date. Run `go test -run TestGolden -update` to
// rewrite the reply, decisions and diagnostics sections.
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

// goldenNow is the Date of the captures in protocols.md §1.6.
var goldenNow = time.Date(2026, 11, 22, 2, 31, 44, 0, time.UTC)

func runGolden(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ar := txtar.Parse(string(data))

	idx := rules.NewIndex()
	msgs := policy.Messages{}
	var decisions, diags bytes.Buffer
	out := txtar.Archive{Comment: ar.Comment}
	var requests []string
	for _, f := range ar.Files {
		switch f.Name {
		case "rules":
			for _, r := range parseRules(t, f.Data) {
				idx.Add(&r)
			}
			out.Files = append(out.Files, f)
		case "messages":
			for line := range strings.Lines(f.Data) {
				line = strings.TrimSpace(line)
				if line == "" || strings.HasPrefix(line, "#") {
					continue
				}
				k, v, ok := strings.Cut(line, "=")
				if !ok {
					t.Fatalf("messages: %q has no '='", line)
				}
				msgs[k] = v
			}
			out.Files = append(out.Files, f)
		case "request":
			requests = append(requests, f.Data)
		case "reply", "decisions", "diagnostics":
		default:
			t.Fatalf("unknown section %q", f.Name)
		}
	}

	var pwhashes []string
	log := slog.New(slog.NewTextHandler(&diags, &slog.HandlerOptions{ReplaceAttr: dropTime}))
	h := NewHandler(Config{APIKey: "myapikey", Now: func() time.Time { return goldenNow }},
		policy.New(idx, msgs), policy.NewDecisionLog(&decisions), log)

	var replies []string
	for i, raw := range requests {
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			t.Fatalf("request %d: %v", i+1, err)
		}
		body := raw[strings.Index(raw, "\n\n")+2:]
		body = strings.TrimSuffix(body, "\n")
		if req.ContentLength != int64(len(body)) {
			t.Fatalf("request %d: Content-Length %d, body has %d bytes", i+1, req.ContentLength, len(body))
		}
		if m := pwhashRE.FindStringSubmatch(body); m != nil {
			pwhashes = append(pwhashes, m[1])
		}
		req.RemoteAddr = "127.0.0.1:40000"
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		reply := fmt.Sprintf("HTTP %d\nContent-Type: %s\n\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body.String())
		if !strings.HasSuffix(reply, "\n") {
			reply += "\n"
		}
		replies = append(replies, reply)
		out.Files = append(out.Files, txtar.File{Name: "request", Data: raw}, txtar.File{Name: "reply", Data: reply})
	}
	out.Files = append(out.Files, txtar.File{Name: "decisions", Data: decisions.String()}, txtar.File{Name: "diagnostics", Data: diags.String()})

	// Never a password hash in any log (DESIGN.md §6).
	for _, ph := range pwhashes {
		if ph == "" {
			continue
		}
		for _, l := range []string{decisions.String(), diags.String()} {
			if strings.Contains(l, ph) {
				t.Errorf("pwhash %q appears in a log:\n%s", ph, l)
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
	// Compare section by section for readable failures.
	want := txtar.Parse(string(data))
	var wantReplies []string
	var wantDec, wantDiag string
	for _, f := range want.Files {
		switch f.Name {
		case "reply":
			wantReplies = append(wantReplies, f.Data)
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
	if decisions.String() != wantDec {
		t.Errorf("decisions:\ngot:\n%s\nwant:\n%s", decisions.String(), wantDec)
	}
	if diags.String() != wantDiag {
		t.Errorf("diagnostics:\ngot:\n%s\nwant:\n%s", diags.String(), wantDiag)
	}
	if got != string(data) && !t.Failed() {
		t.Errorf("transcript layout differs from a rewrite (run with -update and review the diff)")
	}
}

var pwhashRE = regexp.MustCompile(`"pwhash":"([^"]*)"`)

func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// parseRules reads "ID SCOPE ACCOUNT SERVICE ACTION MATCH" lines.
func parseRules(t *testing.T, s string) []rules.Rule {
	t.Helper()
	var rs []rules.Rule
	for line := range strings.Lines(s) {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) != 6 {
			t.Fatalf("rule %q: want ID SCOPE ACCOUNT SERVICE ACTION MATCH", line)
		}
		id, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			t.Fatalf("rule %q: id: %v", line, err)
		}
		r := rules.Rule{ID: id}
		switch f[1] {
		case "global":
			r.Scope = rules.ScopeGlobal
		case "account":
			r.Scope = rules.ScopeAccount
			r.Account = f[2]
		default:
			t.Fatalf("rule %q: scope %q", line, f[1])
		}
		if r.Service, err = rules.ParseService(f[3]); err != nil {
			t.Fatalf("rule %q: %v", line, err)
		}
		if r.Action, err = rules.ParseAction(f[4]); err != nil {
			t.Fatalf("rule %q: %v", line, err)
		}
		if r.Match, err = rules.ParseMatch(f[5]); err != nil {
			t.Fatalf("rule %q: %v", line, err)
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("rule %q: %v", line, err)
		}
		rs = append(rs, r)
	}
	return rs
}

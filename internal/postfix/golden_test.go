package postfix

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"mailgate/internal/txtar"
)

var update = flag.Bool("update", false, "rewrite the expected answers, limiter calls, decisions and diagnostics in testdata/*.txtar")

// The golden transcripts in testdata/*.txtar replay what Postfix sends
// (starting from the captures of protocols.md §3.2 and §3.5) over a real
// loopback connection to a Server, with a real policy.Engine, fake
// permits and a fake sending limiter. Each file is a txtar archive:
//
//	comment: what the transcript shows
//	-- config --      "key = value" lines: listener (policy, relay for a
//	                  relay-only policy listener, socketmap, or tcp:MAP),
//	                  relay_context, limit_action
//	-- rules --       one rule a line: ID ACCOUNT SERVICE ACTION MATCH
//	                  ("global" as ACCOUNT for the global lists)
//	-- bans --        address bans: one prefix a line
//	-- permits --     valid relay permits: PREFIX LOGIN
//	-- limits --      LOGIN MAX LIMIT: the login's first MAX recipients
//	                  pass, then Rcpt answers LIMIT
//	-- send --        bytes the client sends (for socketmap, without the
//	                  final newline of the section)
//	-- send-eof --    the same, then the client closes its sending side
//	-- recv --        what the server answered: the bytes up to the end
//	                  of one answer (for socketmap, plus a newline), or
//	                  "(closed without an answer)"
//	(send/recv pairs repeat, in order, on one connection; after a close
//	the next send opens a new one)
//	-- limiter --     the limiter's calls
//	-- decisions --   the decision log
//	-- diagnostics -- the diagnostic log (slog text, without time)
//
// Every file's connections come from their own source address,
// 127.0.0.(10 + the file's position). The clock is fixed. Run
// `go test -run TestGolden -update` to rewrite the recv, limiter,
// decisions and diagnostics sections, and review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/*.txtar transcripts")
	}
	for i, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			runGolden(t, file, fmt.Sprintf("127.0.0.%d", 10+i))
		})
	}
}

const closedMark = "(closed without an answer)\n"

func runGolden(t *testing.T, file, src string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	ar := txtar.Parse(string(data))

	cfg := DefaultConfig()
	listener := "policy"
	var specs, bans []string
	type permit struct{ prefix, login string }
	var permits []permit
	type limit struct {
		login, name string
		max         int
	}
	var limits []limit
	type step struct {
		send string
		eof  bool
	}
	var steps []step
	out := txtar.Archive{Comment: ar.Comment}
	for _, f := range ar.Files {
		switch f.Name {
		case "config":
			for _, l := range lines(f.Data) {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					t.Fatalf("config: %q has no '='", l)
				}
				k, v = strings.TrimSpace(k), strings.TrimSpace(v)
				switch k {
				case "listener":
					listener = v
				case "relay_context":
					cfg.RelayContext = v
				case "limit_action":
					cfg.LimitAction = v
				default:
					t.Fatalf("config: unknown key %q", k)
				}
			}
		case "rules":
			for _, l := range lines(f.Data) {
				id, spec, _ := strings.Cut(l, " ")
				if n, err := strconv.Atoi(id); err != nil || n != len(specs)+1 {
					t.Fatalf("rules: %q: ids must count from 1", l)
				}
				specs = append(specs, spec)
			}
		case "bans":
			bans = append(bans, lines(f.Data)...)
		case "permits":
			for _, l := range lines(f.Data) {
				p, login, _ := strings.Cut(l, " ")
				permits = append(permits, permit{p, login})
			}
		case "limits":
			for _, l := range lines(f.Data) {
				fs := strings.Fields(l)
				if len(fs) != 3 {
					t.Fatalf("limits: %q: want LOGIN MAX LIMIT", l)
				}
				n, err := strconv.Atoi(fs[1])
				if err != nil {
					t.Fatalf("limits: %q: %v", l, err)
				}
				limits = append(limits, limit{fs[0], fs[2], n})
			}
		case "send", "send-eof":
			s := f.Data
			if listener == "socketmap" {
				s = strings.TrimSuffix(s, "\n")
			}
			steps = append(steps, step{s, f.Name == "send-eof"})
			out.Files = append(out.Files, f)
			continue
		case "recv", "limiter", "decisions", "diagnostics":
			continue
		default:
			t.Fatalf("unknown section %q", f.Name)
		}
		out.Files = append(out.Files, f)
	}

	ev := newEnv(t, cfg, newEngine(t, specs, bans))
	for _, p := range permits {
		ev.permits.add(p.prefix, p.login)
	}
	for _, l := range limits {
		ev.limits.set(l.login, l.max, l.name)
	}
	_, addr := startServer(t, ev.h, testLogger(&ev.diags), listener)

	var c *net.TCPConn
	var br *bufio.Reader
	var recvs []string
	for i, st := range steps {
		if c == nil {
			c = dialFrom(t, src, addr)
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br = bufio.NewReader(c)
		}
		if _, err := io.WriteString(c, st.send); err != nil {
			t.Fatalf("step %d: write: %v", i+1, err)
		}
		if st.eof {
			c.CloseWrite()
		}
		got, closed, err := readAnswer(br, listener)
		if err != nil {
			t.Fatalf("step %d: %v (got %q)", i+1, err, got)
		}
		if closed || strings.HasPrefix(listener, "tcp:") && strings.HasPrefix(got, "4") {
			// A tcp_table server closes after a 400, as Postfix does.
			c.Close()
			c = nil
		}
		if listener == "socketmap" && got != closedMark {
			got += "\n"
		}
		recvs = append(recvs, got)
	}
	if c != nil {
		c.Close()
	}
	// Insert each recv after its send. The logs are complete: the server
	// writes a decision before its answer, and a warning before it closes
	// a connection.
	var files []txtar.File
	k := 0
	for _, f := range out.Files {
		files = append(files, f)
		if f.Name == "send" || f.Name == "send-eof" {
			files = append(files, txtar.File{Name: "recv", Data: recvs[k]})
			k++
		}
	}
	out.Files = files
	lim, dec, diag := ev.limits.log(), ev.decisions.String(), ev.diags.String()
	out.Files = append(out.Files,
		txtar.File{Name: "limiter", Data: lim},
		txtar.File{Name: "decisions", Data: dec},
		txtar.File{Name: "diagnostics", Data: diag})

	got := txtar.Format(out)
	if *update {
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	var wantRecvs []string
	var wantLim, wantDec, wantDiag string
	for _, f := range ar.Files {
		switch f.Name {
		case "recv":
			wantRecvs = append(wantRecvs, f.Data)
		case "limiter":
			wantLim = f.Data
		case "decisions":
			wantDec = f.Data
		case "diagnostics":
			wantDiag = f.Data
		}
	}
	if len(wantRecvs) != len(recvs) {
		t.Fatalf("%d sends but %d expected answers (run with -update)", len(recvs), len(wantRecvs))
	}
	for i := range recvs {
		if recvs[i] != wantRecvs[i] {
			t.Errorf("answer %d:\ngot:\n%s\nwant:\n%s", i+1, recvs[i], wantRecvs[i])
		}
	}
	for _, s := range []struct{ name, got, want string }{
		{"limiter", lim, wantLim},
		{"decisions", dec, wantDec},
		{"diagnostics", diag, wantDiag},
	} {
		if s.got != s.want {
			t.Errorf("%s:\ngot:\n%s\nwant:\n%s", s.name, s.got, s.want)
		}
	}
	if got != string(data) && !t.Failed() {
		t.Errorf("transcript layout differs from a rewrite (run with -update and review the diff)")
	}
}

func lines(s string) []string {
	var out []string
	for l := range strings.Lines(s) {
		l = strings.TrimSpace(l)
		if l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// readAnswer reads one answer of the listener's kind: a policy answer up
// to its empty line, a netstring, or a tcp_table line. closed is set when
// the server closed the connection instead (got is then closedMark).
func readAnswer(br *bufio.Reader, kind string) (got string, closed bool, err error) {
	var b strings.Builder
	defer func() { got = b.String() }()
	eof := func(err error) (string, bool, error) {
		if errors.Is(err, io.EOF) && b.Len() == 0 {
			b.WriteString(closedMark)
			return "", true, nil
		}
		return "", false, fmt.Errorf("reading the answer: %w", err)
	}
	switch {
	case kind == "policy" || kind == "relay":
		for {
			l, err := br.ReadString('\n')
			b.WriteString(l)
			if err != nil {
				return eof(err)
			}
			if l == "\n" {
				return "", false, nil
			}
		}
	case kind == "socketmap":
		n, err := br.ReadString(':')
		b.WriteString(n)
		if err != nil {
			return eof(err)
		}
		size, err := strconv.Atoi(strings.TrimSuffix(n, ":"))
		if err != nil {
			return "", false, fmt.Errorf("netstring length %q", n)
		}
		p := make([]byte, size+1)
		if _, err := io.ReadFull(br, p); err != nil {
			return "", false, fmt.Errorf("netstring: %w", err)
		}
		b.Write(p)
		return "", false, nil
	default:
		l, err := br.ReadString('\n')
		b.WriteString(l)
		if err != nil {
			return eof(err)
		}
		return "", false, nil
	}
}

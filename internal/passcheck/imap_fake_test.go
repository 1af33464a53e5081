package passcheck

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeIMAP is an in-process IMAP server; script runs once per connection.
type fakeIMAP struct {
	ln     net.Listener
	script func(s *imapServerConn)
}

// imapServerConn is the server side of one connection.
type imapServerConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func (s *imapServerConn) send(line string) { io.WriteString(s.nc, line+"\r\n") }

// readLine reads one CRLF line (fails the test on error, returning "").
func (s *imapServerConn) readLine() string {
	s.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := s.br.ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(line, "\r\n")
}

// readCommand reads a whole command, sending "+" for each synchronizing
// literal, and returns the tag, the command name and its arguments
// decoded (quoted strings unescaped, literals read), plus the raw text.
func (s *imapServerConn) readCommand() (tag, cmd string, args []string, raw string) {
	var text strings.Builder
	for {
		line := s.readLine()
		text.WriteString(line)
		n, sync, ok := literalAt(line)
		if !ok {
			break
		}
		if sync {
			// The client must wait for "+": nothing may arrive first.
			s.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if _, err := s.br.Peek(1); err == nil {
				s.t.Errorf("client sent a synchronizing literal's data before the continuation")
			}
			s.send("+ Ready for literal data")
		}
		buf := make([]byte, n)
		s.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		io.ReadFull(s.br, buf)
		text.WriteString("\r\n")
		text.Write(buf)
	}
	raw = text.String()
	tag, rest, _ := strings.Cut(raw, " ")
	cmd, rest, _ = strings.Cut(rest, " ")
	return tag, strings.ToUpper(cmd), decodeArgs(rest), raw
}

// literalAt reports a literal announced at the end of line: "{n}" (sync)
// or "{n+}".
func literalAt(line string) (n int, sync, ok bool) {
	if !strings.HasSuffix(line, "}") {
		return 0, false, false
	}
	i := strings.LastIndexByte(line, '{')
	if i < 0 {
		return 0, false, false
	}
	num := line[i+1 : len(line)-1]
	sync = !strings.HasSuffix(num, "+")
	n, err := strconv.Atoi(strings.TrimSuffix(num, "+"))
	return n, sync, err == nil
}

// decodeArgs splits IMAP astrings: quoted strings (with \" and \\),
// literals ("{n}\r\n" + n bytes) and atoms.
func decodeArgs(s string) []string {
	var out []string
	for len(s) > 0 {
		switch s[0] {
		case ' ':
			s = s[1:]
		case '"':
			var b strings.Builder
			i := 1
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) {
					i++
				}
				b.WriteByte(s[i])
			}
			out = append(out, b.String())
			s = s[min(i+1, len(s)):]
		case '{':
			end := strings.Index(s, "}\r\n")
			n, _ := strconv.Atoi(strings.TrimSuffix(s[1:end], "+"))
			start := end + 3
			out = append(out, s[start:start+n])
			s = s[start+n:]
		default:
			atom, rest, _ := strings.Cut(s, " ")
			out = append(out, atom)
			s = rest
		}
	}
	return out
}

func startFakeIMAP(t *testing.T, script func(s *imapServerConn)) *fakeIMAP {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIMAP{ln: ln, script: script}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer nc.Close()
				script(&imapServerConn{t: t, nc: nc, br: bufio.NewReader(nc)})
			})
		}
	})
	return f
}

// dovecotLike answers like Dovecot: OK for password "right", NO
// [AUTHENTICATIONFAILED] otherwise, and reports each LOGIN's arguments
// and raw text on got.
func dovecotLike(greeting string, got chan<- []string) func(s *imapServerConn) {
	return func(s *imapServerConn) {
		s.send(greeting)
		for {
			tag, cmd, args, raw := s.readCommand()
			switch cmd {
			case "ID":
				s.send(`* ID ("name" {7}`)
				io.WriteString(s.nc, "Dovecot)\r\n")
				s.send(tag + " OK ID completed.")
				if got != nil {
					got <- []string{"ID", raw}
				}
			case "LOGIN":
				if got != nil {
					got <- append([]string{"LOGIN", raw}, args...)
				}
				if len(args) == 2 && args[1] == "right" {
					s.send(tag + " OK [CAPABILITY IMAP4rev1 IDLE] Logged in")
				} else {
					s.send(tag + " NO [AUTHENTICATIONFAILED] Authentication failed.")
				}
			case "LOGOUT":
				s.send("* BYE Logging out")
				s.send(tag + " OK Logout completed.")
				return
			default:
				return
			}
		}
	}
}

const (
	greetLiteralPlus = "* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN] Dovecot ready."
	greetSync        = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready."
	greetBare        = "* OK ready."
)

// TestFakeIMAPArguments: logins and passwords reach the server intact, as
// quoted strings when they can be and as literals when not, with and
// without LITERAL+.
func TestFakeIMAPArguments(t *testing.T) {
	for _, greeting := range []string{greetLiteralPlus, greetSync, greetBare} {
		got := make(chan []string, 10)
		f := startFakeIMAP(t, dovecotLike(greeting, got))
		m := NewIMAP(f.ln.Addr().String(), IMAPOptions{Timeout: 5 * time.Second})
		for _, tc := range []struct {
			login, password string
			literal         bool
		}{
			{"alice@example.test", "right", false},
			{`sp ace "q" back\slash`, "right", false},
			{"tab\tlogin", "right", true},
			{"jürgen", "right", true},
			{"cr\rlf\n", "right", true},
			{"{5}", "right", false},
			{"alice@example.test", `wrong "pw" \`, false},
			{"alice@example.test", "wrong\tpässwörd", true},
		} {
			wantOK := tc.password == "right"
			ok, err := m.Verify(context.Background(), &Request{Login: tc.login, Password: tc.password})
			if ok != wantOK || err != nil {
				t.Errorf("%s: %q/%q: %v, %v; want %v", greeting, tc.login, tc.password, ok, err, wantOK)
				continue
			}
			g := <-got
			if len(g) != 4 || g[2] != tc.login || g[3] != tc.password {
				t.Errorf("%s: server decoded %q, want %q %q", greeting, g, tc.login, tc.password)
			}
			raw := g[1]
			literal := strings.Contains(raw, "}\r\n")
			if literal != tc.literal {
				t.Errorf("%s: %q sent as %q; literal %v, want %v", greeting, tc.login, raw, literal, tc.literal)
			}
			plus := strings.Contains(raw, "+}\r\n")
			if literal && plus != (greeting == greetLiteralPlus) {
				t.Errorf("%s: literal %q: non-synchronizing %v", greeting, raw, plus)
			}
		}
	}
}

// TestFakeIMAPID: with SendID the server gets the client's address, port,
// local address and session in an ID command before LOGIN.
func TestFakeIMAPID(t *testing.T) {
	got := make(chan []string, 10)
	f := startFakeIMAP(t, dovecotLike(greetLiteralPlus, got))
	m := NewIMAP(f.ln.Addr().String(), IMAPOptions{SendID: true})
	r := &Request{
		Login: "alice", Password: "right", Client: netip.MustParseAddr("::ffff:203.0.113.9"), ClientPort: 50123,
		Local: netip.MustParseAddr("192.0.2.25"), Session: "sess1",
	}
	if ok, err := m.Verify(context.Background(), r); !ok || err != nil {
		t.Fatalf("Verify: %v, %v", ok, err)
	}
	id := <-got
	want := `m1 ID ("x-originating-ip" "203.0.113.9" "x-originating-port" "50123" "x-connected-ip" "192.0.2.25" "x-session-ext-id" "sess1")`
	if id[0] != "ID" || id[1] != want {
		t.Errorf("ID command %q, want %q", id, want)
	}
	if login := <-got; login[0] != "LOGIN" {
		t.Errorf("after ID came %q", login)
	}
	// Nothing known: ID NIL.
	if _, err := m.Verify(context.Background(), &Request{Login: "alice", Password: "right"}); err != nil {
		t.Fatal(err)
	}
	if id := <-got; id[1] != "m1 ID NIL" {
		t.Errorf("ID command %q, want m1 ID NIL", id[1])
	}
	<-got
}

// TestFakeIMAPReplies: how each answer maps to ok/err.
func TestFakeIMAPReplies(t *testing.T) {
	const password = "Imap-Secret-55"
	loginReply := func(greeting string, reply ...string) func(s *imapServerConn) {
		return func(s *imapServerConn) {
			s.send(greeting)
			tag, cmd, _, raw := s.readCommand()
			if cmd == "ID" {
				s.send(tag + " BAD Unknown command")
				tag, cmd, _, raw = s.readCommand()
			}
			if cmd != "LOGIN" {
				return
			}
			for _, r := range reply {
				r = strings.ReplaceAll(r, "TAG", tag)
				r = strings.ReplaceAll(r, "ECHO", raw)
				s.send(r)
			}
			s.readCommand() // LOGOUT
		}
	}
	for _, tc := range []struct {
		name    string
		script  func(s *imapServerConn)
		ok      bool
		errIs   error  // nil: no error expected unless errPart is set
		errPart string // part of the error text
		sendID  bool
	}{
		{name: "ok", script: loginReply(greetBare, "TAG OK Logged in"), ok: true},
		{name: "lower-case ok", script: loginReply(greetBare, "* CAPABILITY IMAP4rev1", "TAG ok done"), ok: true},
		{name: "no", script: loginReply(greetBare, "TAG NO [AUTHENTICATIONFAILED] Authentication failed.")},
		{name: "no by policy", script: loginReply(greetBare, "TAG NO [ALERT] Blocked by policy")},
		{name: "no plain", script: loginReply(greetBare, "TAG NO Login failed")},
		{name: "id refused", script: loginReply(greetBare, "TAG OK Logged in"), ok: true, sendID: true},
		{name: "unavailable", script: loginReply(greetBare, "TAG NO [UNAVAILABLE] Temporary authentication failure."), errIs: ErrTemporary},
		{name: "serverbug", script: loginReply(greetBare, "TAG NO [SERVERBUG] Internal error"), errIs: ErrTemporary},
		{name: "privacy", script: loginReply(greetBare, "TAG NO [PRIVACYREQUIRED] Plaintext authentication disallowed"), errIs: ErrProtocol},
		{name: "bad", script: loginReply(greetBare, "TAG BAD Error in IMAP command"), errIs: ErrProtocol},
		{name: "bye", script: loginReply(greetBare, "* BYE Server shutting down"), errIs: ErrTemporary},
		{name: "echo", script: loginReply(greetBare, "xx ECHO"), errIs: ErrProtocol, errPart: "not shown"},
		{name: "oversize", script: loginReply(greetBare, "* "+strings.Repeat("x", MaxLineLen)), errIs: ErrProtocol, errPart: "line longer"},
		{name: "oversize literal", script: loginReply(greetBare, fmt.Sprintf("* X {%d}", MaxLineLen)), errIs: ErrProtocol, errPart: "line longer"},
		{name: "dropped", script: func(s *imapServerConn) {
			s.send(greetBare)
			s.readCommand() // LOGIN, then close
		}, errIs: io.EOF},
		{name: "greeting bye", script: loginReply("* BYE Too many connections"), errIs: ErrTemporary},
		{name: "preauth", script: loginReply("* PREAUTH logged in already"), errIs: ErrProtocol},
		{name: "tagged greeting", script: loginReply("a OK hi"), errIs: ErrProtocol},
		{name: "logindisabled", script: loginReply("* OK [CAPABILITY IMAP4rev1 LOGINDISABLED] ready"), errIs: ErrProtocol, errPart: "LOGINDISABLED"},
		{name: "literal refused", script: func(s *imapServerConn) {
			s.send(greetSync)
			line := s.readLine() // m2 LOGIN {n}
			tag, _, _ := strings.Cut(line, " ")
			s.send(tag + " BAD literal not allowed")
		}, errIs: ErrProtocol},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeIMAP(t, tc.script)
			m := NewIMAP(f.ln.Addr().String(), IMAPOptions{Timeout: 5 * time.Second, SendID: tc.sendID})
			login := "alice@example.test"
			if tc.name == "literal refused" {
				login = "jürgen"
			}
			r := &Request{Login: login, Password: password}
			ok, err := m.Verify(context.Background(), r)
			if ok != tc.ok || (err != nil) != (tc.errIs != nil) || (tc.errIs != nil && !errors.Is(err, tc.errIs)) {
				t.Fatalf("Verify = %v, %v; want %v, error %v", ok, err, tc.ok, tc.errIs)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tc.errPart) {
					t.Errorf("error %q lacks %q", err, tc.errPart)
				}
				noSecret(t, "error", err.Error(), r)
				if strings.Contains(err.Error(), password) {
					t.Errorf("error holds the password: %v", err)
				}
			}
		})
	}
}

// TestFakeIMAPTimeout: a server that never answers LOGIN costs Timeout
// and an error; one that never answers LOGOUT costs a second at most.
func TestFakeIMAPTimeout(t *testing.T) {
	silentLogout := startFakeIMAP(t, func(s *imapServerConn) {
		s.send(greetBare)
		tag, _, _, _ := s.readCommand()
		s.send(tag + " OK Logged in")
		s.readCommand() // LOGOUT, unanswered
		s.readLine()
	})
	start := time.Now()
	ok, err := NewIMAP(silentLogout.ln.Addr().String(), IMAPOptions{Timeout: 10 * time.Second}).Verify(context.Background(), &Request{Login: "a", Password: "b"})
	if !ok || err != nil {
		t.Fatalf("Verify with an unanswered LOGOUT = %v, %v; want true", ok, err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Errorf("an unanswered LOGOUT held the answer for %v", el)
	}

	f := startFakeIMAP(t, func(s *imapServerConn) {
		s.send(greetBare)
		s.readCommand()
		s.readLine() // until the client gives up
	})
	m := NewIMAP(f.ln.Addr().String(), IMAPOptions{Timeout: 200 * time.Millisecond})
	start = time.Now()
	ok, err = m.Verify(context.Background(), &Request{Login: "a", Password: "b"})
	if ok || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Verify = %v, %v; want a timeout", ok, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("timed out after %v", el)
	}
	// Unsendable credentials are false without a connection.
	for _, r := range []*Request{{Login: "a\x00", Password: "b"}, {Login: "a"}} {
		if ok, err := NewIMAP("127.0.0.1:1", IMAPOptions{}).Verify(context.Background(), r); ok || err != nil {
			t.Errorf("%q: %v, %v; want false, nil", r.Login, ok, err)
		}
	}
	// Nothing listening: an error.
	if ok, err := NewIMAP("127.0.0.1:1", IMAPOptions{}).Verify(context.Background(), &Request{Login: "a", Password: "b"}); ok || err == nil {
		t.Errorf("down: %v, %v; want an error", ok, err)
	}
}

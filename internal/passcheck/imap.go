package passcheck

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// IMAPOptions configures an IMAP verifier.
type IMAPOptions struct {
	// Timeout bounds one Verify, connecting included; 0 means
	// DefaultTimeout.
	Timeout time.Duration
	// SendID sends an IMAP ID command (RFC 2971) with the client's address
	// ("x-originating-ip", "x-originating-port", and "x-connected-ip",
	// "x-session-ext-id" when known) before LOGIN. Dovecot honours it only
	// when mailgate's address is in its login_trusted_networks; then its
	// penalty, auth policy and logs see the real client instead of
	// mailgate.
	SendID bool
}

// logoutWait bounds the wait for the answer to LOGOUT.
const logoutWait = time.Second

// IMAP verifies passwords by logging in to an IMAP server (LOGIN, then
// LOGOUT), as the seed's auth_http script did: one plain TCP connection per
// verification. Tagged OK is a correct password, NO a wrong one (NO with
// UNAVAILABLE, SERVERBUG, PRIVACYREQUIRED or LIMIT is an error: the server
// could not say), BAD or anything else an error. Safe for concurrent use.
type IMAP struct {
	addr    string
	timeout time.Duration
	sendID  bool
}

// NewIMAP returns a verifier for the IMAP server at addr ("host:port").
func NewIMAP(addr string, opts IMAPOptions) *IMAP {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	return &IMAP{addr: addr, timeout: opts.Timeout, sendID: opts.SendID}
}

// Verify logs in as r.Login with r.Password. See the package comment for
// what ok and err mean. A login or password that cannot be sent (empty,
// too long, containing NUL) is answered false without asking.
func (m *IMAP) Verify(ctx context.Context, r *Request) (ok bool, err error) {
	if !acceptable(r) {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	ok, err = m.verify(ctx, r)
	if err != nil {
		err = ctxError(ctx, err)
		return false, fmt.Errorf("passcheck: imap %s: login %q: %w", m.addr, printable(r.Login, 64), err)
	}
	return ok, nil
}

func (m *IMAP) verify(ctx context.Context, r *Request) (bool, error) {
	var dialer net.Dialer
	nc, err := dialer.DialContext(ctx, "tcp", m.addr)
	if err != nil {
		return false, fmt.Errorf("connect: %w", err)
	}
	defer nc.Close()
	deadline, _ := ctx.Deadline()
	nc.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	s := &imapConn{br: bufio.NewReaderSize(nc, 4096), w: nc}

	greeting, err := s.readResponse()
	if err != nil {
		return false, fmt.Errorf("greeting: %w", err)
	}
	status, code, _ := splitStatus(strings.TrimPrefix(greeting, "* "))
	switch {
	case !strings.HasPrefix(greeting, "* "):
		return false, fmt.Errorf("%w: greeting is not untagged", ErrProtocol)
	case status == "BYE":
		return false, fmt.Errorf("%w: server said BYE in its greeting", ErrTemporary)
	case status != "OK":
		// PREAUTH (already logged in) cannot verify anything.
		return false, fmt.Errorf("%w: greeting %s", ErrProtocol, quoteShort([]byte(status)))
	}
	caps := map[string]bool{}
	if code == "CAPABILITY" {
		for _, c := range strings.Fields(capabilityList(greeting)) {
			caps[strings.ToUpper(c)] = true
		}
	}
	if caps["LOGINDISABLED"] {
		return false, fmt.Errorf("%w: server has LOGINDISABLED (plaintext login needs TLS there)", ErrProtocol)
	}
	nonSync := caps["LITERAL+"] || caps["LITERAL-"] // RFC 7888; our literals are under 4096 bytes

	if m.sendID {
		if err := s.send("m1", "ID "+idArgs(r)); err != nil {
			return false, fmt.Errorf("ID: %w", err)
		}
		// Any tagged answer will do: a server without ID says BAD, and
		// LOGIN works all the same.
		if _, _, err := s.tagged("m1"); err != nil {
			return false, fmt.Errorf("ID: %w", err)
		}
	}

	status, code, err = s.login(r.Login, r.Password, nonSync)
	if err != nil {
		return false, fmt.Errorf("LOGIN: %w", err)
	}
	var ok bool
	switch status {
	case "OK":
		ok = true
	case "NO":
		switch code {
		case "UNAVAILABLE", "SERVERBUG", "LIMIT":
			return false, fmt.Errorf("%w: LOGIN answered NO [%s]", ErrTemporary, code)
		case "PRIVACYREQUIRED":
			return false, fmt.Errorf("%w: LOGIN answered NO [%s] (plaintext login needs TLS there)", ErrProtocol, code)
		}
	default:
		return false, fmt.Errorf("%w: LOGIN answered %s", ErrProtocol, quoteShort([]byte(status)))
	}
	// Log out politely, waiting a moment at most: the answer is known
	// already, and errors here do not change it.
	if dl := time.Now().Add(logoutWait); dl.Before(deadline) {
		nc.SetDeadline(dl)
	}
	if s.send("m3", "LOGOUT") == nil {
		s.tagged("m3")
	}
	return ok, nil
}

// imapConn is the client side of one IMAP connection.
type imapConn struct {
	br *bufio.Reader
	w  io.Writer
}

// send writes "<tag> <cmd>\r\n".
func (s *imapConn) send(tag, cmd string) error {
	_, err := io.WriteString(s.w, tag+" "+cmd+"\r\n")
	return err
}

// login sends LOGIN with both arguments as quoted strings, or as literals
// when they hold anything but printable ASCII (RFC 9051 §4.3; 8-bit text,
// CR, LF and other controls cannot be quoted). A synchronizing literal
// waits for the server's "+" continuation; with LITERAL+/LITERAL- the
// literal is sent at once. It returns the tagged status and response code.
func (s *imapConn) login(login, password string, nonSync bool) (status, code string, err error) {
	buf := []byte("m2 LOGIN ")
	defer func() { clear(buf) }()
	for i, arg := range []string{login, password} {
		if i > 0 {
			buf = append(buf, ' ')
		}
		if quotable(arg) {
			buf = appendQuoted(buf, arg)
			continue
		}
		buf = append(buf, '{')
		buf = strconv.AppendInt(buf, int64(len(arg)), 10)
		if nonSync {
			buf = append(buf, "+}\r\n"...)
			buf = append(buf, arg...)
			continue
		}
		buf = append(buf, "}\r\n"...)
		if _, err := s.w.Write(buf); err != nil {
			return "", "", err
		}
		clear(buf)
		buf = buf[:0]
		// Wait for "+ …"; the server may refuse the literal with a
		// tagged answer instead.
		for {
			line, err := s.readResponse()
			if err != nil {
				return "", "", err
			}
			if strings.HasPrefix(line, "+") {
				break
			}
			if rest, ok := strings.CutPrefix(line, "m2 "); ok {
				status, code, _ := splitStatus(rest)
				return status, code, nil
			}
			if err := untagged(line); err != nil {
				return "", "", err
			}
		}
		buf = append(buf, arg...)
	}
	buf = append(buf, "\r\n"...)
	if _, err := s.w.Write(buf); err != nil {
		return "", "", err
	}
	return s.tagged("m2")
}

// tagged reads responses until the one tagged tag and returns its status
// (OK, NO, BAD, upper-cased) and response code.
func (s *imapConn) tagged(tag string) (status, code string, err error) {
	for {
		line, err := s.readResponse()
		if err != nil {
			return "", "", err
		}
		if rest, ok := strings.CutPrefix(line, tag+" "); ok {
			status, code, _ := splitStatus(rest)
			return status, code, nil
		}
		if err := untagged(line); err != nil {
			return "", "", err
		}
	}
}

// untagged checks a response that is not the tagged one awaited: untagged
// data is skipped, BYE means the server is closing, anything else is a
// protocol error.
func untagged(line string) error {
	rest, ok := strings.CutPrefix(line, "* ")
	if !ok {
		return fmt.Errorf("%w: unexpected response %s", ErrProtocol, quoteShort([]byte(line)))
	}
	if status, _, _ := splitStatus(rest); status == "BYE" {
		return fmt.Errorf("%w: server said BYE", ErrTemporary)
	}
	return nil
}

// readResponse reads one response line, with the literals it announces
// ("{n}" at the end of a line) read and appended, up to MaxLineLen bytes
// in all.
func (s *imapConn) readResponse() (string, error) {
	var buf []byte
	for {
		line, err := readLine(s.br, MaxLineLen, true)
		if err != nil {
			return "", err
		}
		if len(buf)+len(line) > MaxLineLen {
			return "", errLineTooLong
		}
		buf = append(buf, line...)
		n, ok := trailingLiteral(line)
		if !ok {
			return string(buf), nil
		}
		if n > MaxLineLen-len(buf) {
			return "", errLineTooLong
		}
		start := len(buf)
		buf = append(buf, make([]byte, n)...)
		if _, err := io.ReadFull(s.br, buf[start:]); err != nil {
			return "", err
		}
	}
}

// trailingLiteral returns n if line ends with "{n}" (a literal of n bytes
// follows).
func trailingLiteral(line []byte) (int, bool) {
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(line[open+1 : len(line)-1]))
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// splitStatus splits "OK [CODE args] text" into the upper-cased status,
// the upper-cased code name (without its arguments) and the rest.
func splitStatus(s string) (status, code, rest string) {
	status, rest, _ = strings.Cut(s, " ")
	status = strings.ToUpper(status)
	if inner, ok := strings.CutPrefix(rest, "["); ok {
		end := strings.IndexByte(inner, ']')
		if end >= 0 {
			code, _, _ = strings.Cut(inner[:end], " ")
			code = strings.ToUpper(code)
		}
	}
	return status, code, rest
}

// capabilityList returns the text inside a greeting's "[CAPABILITY …]".
func capabilityList(greeting string) string {
	_, after, ok := strings.Cut(greeting, "[")
	if !ok {
		return ""
	}
	inner, _, _ := strings.Cut(after, "]")
	_, list, _ := strings.Cut(inner, " ")
	return list
}

// quotable reports whether s can be an IMAP quoted string: printable
// ASCII only (quoted-specials are escaped by appendQuoted).
func quotable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// appendQuoted appends s as an IMAP quoted string, escaping '"' and '\'.
func appendQuoted(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' || s[i] == '\\' {
			b = append(b, '\\')
		}
		b = append(b, s[i])
	}
	return append(b, '"')
}

// idArgs renders the ID parameter list with what is known of the client.
func idArgs(r *Request) string {
	b := []byte{'('}
	add := func(k, v string) {
		if v == "" || !quotable(v) {
			return
		}
		if len(b) > 1 {
			b = append(b, ' ')
		}
		b = appendQuoted(b, k)
		b = append(b, ' ')
		b = appendQuoted(b, v)
	}
	add("x-originating-ip", addrString(r.Client))
	if r.ClientPort != 0 {
		add("x-originating-port", strconv.Itoa(int(r.ClientPort)))
	}
	add("x-connected-ip", addrString(r.Local))
	if len(r.Session) <= 64 {
		add("x-session-ext-id", r.Session)
	}
	if len(b) == 1 {
		return "NIL"
	}
	return string(append(b, ')'))
}

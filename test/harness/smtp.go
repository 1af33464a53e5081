package harness

import (
	"bufio"
	"context"
	"encoding/base64"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
)

// SMTPReply is one SMTP reply, possibly of several lines.
type SMTPReply struct {
	Code int // 250, 535, ...
	// Text is the reply's text (with any enhanced status code, like
	// "5.7.0 Invalid login"), its lines joined by "\n".
	Text string
}

func (r SMTPReply) String() string {
	return strconv.Itoa(r.Code) + " " + strings.ReplaceAll(r.Text, "\n", " / ")
}

// OK reports whether the reply is positive (2xx) or asks for more (3xx).
func (r SMTPReply) OK() bool { return r.Code >= 200 && r.Code < 400 }

// SMTPSession is a raw SMTP client connection. Each command returns the
// server's reply; a refusal (4xx, 5xx) is a reply, not an error: errors
// are connection and protocol failures (io.EOF when the server hung up).
type SMTPSession struct {
	// Greeting is the server's 220 (or refusal) greeting.
	Greeting SMTPReply

	conn       net.Conn
	r          *bufio.Reader
	close      func()
	transcript strings.Builder
}

// DialSMTP connects from src (any 127.0.0.0/8 address on Linux loopback)
// to the SMTP server at addr and reads its greeting. The connection gets
// ctx's deadline (DefaultLoginTimeout when ctx has none). Close it with
// Close (or Quit).
func DialSMTP(ctx context.Context, src netip.Addr, addr string) (*SMTPSession, error) {
	conn, closeConn, err := dial(ctx, src, addr)
	if err != nil {
		return nil, fmt.Errorf("smtp: %w", err)
	}
	s := &SMTPSession{conn: conn, r: bufio.NewReaderSize(conn, 4096), close: closeConn}
	s.Greeting, err = s.readReply()
	if err != nil {
		closeConn()
		return nil, fmt.Errorf("smtp greeting from %s: %w", addr, ctxErr(ctx, err))
	}
	return s, nil
}

// Cmd sends one command line (without CRLF) and reads the reply.
func (s *SMTPSession) Cmd(line string) (SMTPReply, error) {
	return s.cmd(line, line)
}

// cmd sends line, writing shown to the transcript instead (to keep
// credentials out of it).
func (s *SMTPSession) cmd(line, shown string) (SMTPReply, error) {
	verb, _, _ := strings.Cut(shown, " ")
	fmt.Fprintf(&s.transcript, "C: %s\n", shown)
	if _, err := fmt.Fprintf(s.conn, "%s\r\n", line); err != nil {
		return SMTPReply{}, fmt.Errorf("smtp %s: %w", verb, err)
	}
	r, err := s.readReply()
	if err != nil {
		return r, fmt.Errorf("smtp %s: %w", verb, err)
	}
	return r, nil
}

// Ehlo sends EHLO name.
func (s *SMTPSession) Ehlo(name string) (SMTPReply, error) {
	return s.Cmd("EHLO " + name)
}

// AuthPlain sends AUTH PLAIN with the initial response (RFC 4616:
// authzid empty, user, password) and returns the final reply (235 on
// success).
func (s *SMTPSession) AuthPlain(user, pass string) (SMTPReply, error) {
	resp := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
	return s.cmd("AUTH PLAIN "+resp, "AUTH PLAIN <credentials of "+user+">")
}

// AuthLogin runs AUTH LOGIN: the server's 334 prompts are answered with
// the base64 user name and password. It returns the first reply that is
// not a 334 (235 on success).
func (s *SMTPSession) AuthLogin(user, pass string) (SMTPReply, error) {
	r, err := s.Cmd("AUTH LOGIN")
	if err != nil || r.Code != 334 {
		return r, err
	}
	r, err = s.cmd(base64.StdEncoding.EncodeToString([]byte(user)), "<user "+user+">")
	if err != nil || r.Code != 334 {
		return r, err
	}
	return s.cmd(base64.StdEncoding.EncodeToString([]byte(pass)), "<password>")
}

// Mail sends MAIL FROM:<from>.
func (s *SMTPSession) Mail(from string) (SMTPReply, error) {
	return s.Cmd("MAIL FROM:<" + from + ">")
}

// Rcpt sends RCPT TO:<to>.
func (s *SMTPSession) Rcpt(to string) (SMTPReply, error) {
	return s.Cmd("RCPT TO:<" + to + ">")
}

// Data sends DATA and, if the server answers 354, the message (lines
// separated by "\n"; dot-stuffed here) and the final ".", returning the
// server's reply to the message (250 queued as ...). Any other reply to
// DATA is returned as is.
func (s *SMTPSession) Data(msg string) (SMTPReply, error) {
	r, err := s.Cmd("DATA")
	if err != nil || r.Code != 354 {
		return r, err
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(strings.ReplaceAll(msg, "\r\n", "\n"), "\n"), "\n") {
		if strings.HasPrefix(line, ".") {
			b.WriteString(".")
		}
		b.WriteString(line)
		b.WriteString("\r\n")
	}
	b.WriteString(".\r\n")
	fmt.Fprintf(&s.transcript, "C: <message, %d bytes>\n", b.Len())
	if _, err := s.conn.Write([]byte(b.String())); err != nil {
		return SMTPReply{}, fmt.Errorf("smtp message: %w", err)
	}
	r, err = s.readReply()
	if err != nil {
		return r, fmt.Errorf("smtp end of data: %w", err)
	}
	return r, nil
}

// Send runs one mail transaction (MAIL, RCPT, DATA with a small message
// whose Subject is subject) and returns the first reply that is not
// positive, or the reply to the message.
func (s *SMTPSession) Send(from, to, subject string) (SMTPReply, error) {
	r, err := s.Mail(from)
	if err != nil || !r.OK() {
		return r, err
	}
	if r, err = s.Rcpt(to); err != nil || !r.OK() {
		return r, err
	}
	msg := fmt.Sprintf("From: <%s>\nTo: <%s>\nSubject: %s\n\nSent by mailgate's test harness.\n", from, to, subject)
	return s.Data(msg)
}

// Quit sends QUIT, reads the reply and closes the connection.
func (s *SMTPSession) Quit() (SMTPReply, error) {
	defer s.Close()
	return s.Cmd("QUIT")
}

// Close closes the connection.
func (s *SMTPSession) Close() error {
	s.close()
	return nil
}

// Transcript returns the session so far, one "C: " or "S: " line per
// line sent or received, for failure messages. Credentials are shown as
// placeholders.
func (s *SMTPSession) Transcript() string {
	return s.transcript.String()
}

// readReply reads one reply: lines "NNN-text" up to "NNN text", at most
// 100 lines of 4 KiB each.
func (s *SMTPSession) readReply() (SMTPReply, error) {
	var r SMTPReply
	var texts []string
	for i := 0; ; i++ {
		if i == 100 {
			return r, fmt.Errorf("reply longer than 100 lines")
		}
		b, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			return r, fmt.Errorf("reply line longer than 4 KiB")
		}
		if err != nil {
			if len(b) > 0 {
				fmt.Fprintf(&s.transcript, "S: %q (then %v)\n", b, err)
			}
			return r, err
		}
		line := strings.TrimRight(string(b), "\r\n")
		fmt.Fprintf(&s.transcript, "S: %s\n", line)
		if len(line) < 3 {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil || code < 100 || code > 599 {
			return r, fmt.Errorf("malformed reply line %q", line)
		}
		if r.Code != 0 && code != r.Code {
			return r, fmt.Errorf("reply line %q does not continue code %d", line, r.Code)
		}
		r.Code = code
		sep, text := byte(' '), ""
		if len(line) > 3 {
			sep, text = line[3], line[4:]
		}
		texts = append(texts, text)
		switch sep {
		case ' ':
			r.Text = strings.Join(texts, "\n")
			return r, nil
		case '-':
		default:
			return r, fmt.Errorf("malformed reply line %q", line)
		}
	}
}

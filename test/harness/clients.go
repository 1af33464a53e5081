package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/textproto"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// DefaultLoginTimeout bounds a login when the context has no deadline.
// Dovecot answers a failed login only after its ~2 s failure delay, plus
// its per-IP penalty when a source address is reused.
const DefaultLoginTimeout = 20 * time.Second

// LoginError is a login the server answered with a refusal (IMAP NO/BAD,
// POP3 -ERR), as opposed to a connection or protocol failure.
type LoginError struct {
	Protocol string // "imap" or "pop3"
	// Response is the server's reply as the user's client would show it:
	// for IMAP "NO [ALERT] text", for POP3 "-ERR [AUTH] text".
	Response string
}

func (e *LoginError) Error() string {
	return e.Protocol + " login refused: " + e.Response
}

// dial connects from src (port chosen by the kernel) to addr. The
// connection gets ctx's deadline (DefaultLoginTimeout when ctx has none)
// and is closed when ctx ends or the returned func is called.
func dial(ctx context.Context, src netip.Addr, addr string) (net.Conn, func(), error) {
	cancel := func() {}
	if _, ok := ctx.Deadline(); !ok {
		ctx, cancel = context.WithTimeout(ctx, DefaultLoginTimeout)
	}
	d := net.Dialer{LocalAddr: net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("connect from %s to %s: %w", src, addr, err)
	}
	dl, _ := ctx.Deadline()
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.Close() })
	return c, func() { stop(); c.Close(); cancel() }, nil
}

// IMAPLogin connects from src to the IMAP server at addr, logs in with
// LOGIN and logs out. A refusal is returned as a *LoginError whose
// Response holds the server's text (Dovecot shows a policy message as
// "NO [ALERT] <msg>"); other failures are plain errors.
func IMAPLogin(ctx context.Context, src netip.Addr, addr, user, pass string) error {
	conn, closeConn, err := dial(ctx, src, addr)
	if err != nil {
		return fmt.Errorf("imap: %w", err)
	}
	defer closeConn()
	c := imapclient.New(conn, &imapclient.Options{})
	defer c.Close()
	if err := c.WaitGreeting(); err != nil {
		return fmt.Errorf("imap greeting from %s: %w", addr, ctxErr(ctx, err))
	}
	if err := c.Login(user, pass).Wait(); err != nil {
		var ie *imap.Error
		if errors.As(err, &ie) {
			resp := string(ie.Type)
			if ie.Code != "" {
				resp += " [" + string(ie.Code) + "]"
			}
			return &LoginError{Protocol: "imap", Response: resp + " " + ie.Text}
		}
		return fmt.Errorf("imap login as %s from %s: %w", user, src, ctxErr(ctx, err))
	}
	if err := c.Logout().Wait(); err != nil {
		return fmt.Errorf("imap logout as %s: %w", user, ctxErr(ctx, err))
	}
	return nil
}

// POP3Login connects from src to the POP3 server at addr, sends USER and
// PASS, then QUIT. A refusal is returned as a *LoginError whose Response is
// the server's -ERR line (Dovecot: "-ERR [AUTH] <msg>").
func POP3Login(ctx context.Context, src netip.Addr, addr, user, pass string) error {
	conn, closeConn, err := dial(ctx, src, addr)
	if err != nil {
		return fmt.Errorf("pop3: %w", err)
	}
	defer closeConn()
	tp := textproto.NewConn(conn)
	line, err := tp.ReadLine()
	if err != nil {
		return fmt.Errorf("pop3 greeting from %s: %w", addr, ctxErr(ctx, err))
	}
	if !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("pop3 greeting from %s: %q", addr, line)
	}
	cmd := func(name, arg string) (string, error) {
		if err := tp.PrintfLine("%s %s", name, arg); err != nil {
			return "", fmt.Errorf("pop3 %s: %w", name, ctxErr(ctx, err))
		}
		line, err := tp.ReadLine()
		if err != nil {
			return "", fmt.Errorf("pop3 %s: %w", name, ctxErr(ctx, err))
		}
		return line, nil
	}
	if line, err = cmd("USER", user); err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+OK") {
		return &LoginError{Protocol: "pop3", Response: line}
	}
	if line, err = cmd("PASS", pass); err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+OK") {
		tp.PrintfLine("QUIT")
		return &LoginError{Protocol: "pop3", Response: line}
	}
	if err := tp.PrintfLine("QUIT"); err != nil {
		return fmt.Errorf("pop3 QUIT: %w", ctxErr(ctx, err))
	}
	if line, err := tp.ReadLine(); err != nil || !strings.HasPrefix(line, "+OK") {
		return fmt.Errorf("pop3 QUIT as %s: %q %v", user, line, ctxErr(ctx, err))
	}
	return nil
}

// ctxErr prefers the context's error (a timeout) over the I/O error it
// caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return err
}

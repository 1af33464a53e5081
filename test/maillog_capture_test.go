package test

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/maillog"
	"mailgate/internal/rules"
	"mailgate/test/harness"
)

var updateMaillog = flag.Bool("update-maillog", false,
	"write the log lines TestMaillogCapture captured to internal/maillog/testdata/capture")

// mlWant is a login outcome TestMaillogCapture makes happen and must find
// in the log of the program that saw it.
type mlWant struct {
	file    string // dovecot.log, maillog, nginx-error.log
	src     string // the client's address
	service rules.Service
	login   string
	success bool
	// anyLogin: the login is not checked (it holds a newline, which the
	// program may have replaced or escaped).
	anyLogin bool
}

// TestMaillogCapture runs the real Dovecot 2.3, Postfix 3.7 and nginx 1.22
// (through mailgate's nginx door) with file logs, makes successful and
// failed IMAP, POP3 and SMTP AUTH logins from distinct 127.0.3.x
// addresses, and checks that internal/maillog reads each outcome from the
// log of the program that saw it, with the right client, login and
// service, and that a login crafted to forge an address does not. With
// -update-maillog it saves the logs as the parser's golden input
// (internal/maillog/testdata/capture, read by TestCapturedGolden).
func TestMaillogCapture(t *testing.T) {
	harness.Require(t, harness.NginxPackages)
	harness.RequirePostfix(t)
	dir := harness.TempDir(t, "mlcap-")
	const alice, alicePW = "alice@example.test", "Alice-Capture-0815"
	const bob, bobPW = "bob@example.test", "Bob-Capture-4711"
	const wrong = "Wrong-Capture-9999"
	// A login that tries to forge the address and the session of the
	// line it is logged in (fail2ban's injection cases, in Dovecot's
	// element syntax).
	const evil = "evil>, method=PLAIN, rip=6.6.6.6, lip=6.6.6.6, session=<forged>"
	// Logins that try to start a line of their own (a newline in an IMAP
	// literal or in SASL PLAIN's base64): each program must replace or
	// escape it, or a log reader sees a forged line.
	const evilIMAPNL = "x\nimap-login: Info: Login: user=<forged>, method=PLAIN, rip=6.6.6.6, lip=6.6.6.6, mpid=1, session=<forged>"
	const evilSMTPNL = "x\nDec 05 19:00:00 mx postfix/smtpd[1]: 1A2B3C: client=unknown[6.6.6.6], sasl_method=PLAIN, sasl_username=forged"
	const evilNginxNL = "x\n2026/12/05 19:00:00 [info] 1#1: *1 client logged in, client: 6.6.6.6, server: 127.0.0.1:143, login: \"forged\", upstream: 127.0.0.1:1"

	authSnippet, err := os.ReadFile(filepath.Join("..", "etc", "dovecot", "96-mailgate-auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	dc := harness.StartDovecot(t, harness.DovecotOptions{
		Users:        map[string]string{alice: alicePW, bob: bobPW},
		AuthListener: true,
		Extra:        string(authSnippet),
	})
	pf := harness.StartPostfix(t, harness.PostfixOptions{DovecotSASL: dc.AuthAddr})
	doorAddr := net.JoinHostPort("127.0.0.1", fmt.Sprint(harness.FreePort(t)))
	harness.StartMailgate(t, mailgateConfig(t, dir, "", fmt.Sprintf(`
[nginx]
enabled = true
listen = %q
secret = "capture-secret-0123456789abcdef"
secret_header = "X-Capture-Secret"
verify_with = "dovecot"
dovecot_auth = %q
verify = ["imap", "pop3", "smtp"]
imap_backend = %q
pop3_backend = %q
smtp_backend = %q
`, doorAddr, dc.Socket("auth-mailgate"), dc.IMAPAddr, dc.POP3Addr, pf.SMTPAddr)))
	waitListening(t, doorAddr)
	ng := harness.StartNginx(t, harness.NginxOptions{AuthURL: doorAddr + "/auth", AuthHeader: "X-Capture-Secret", AuthSecret: "capture-secret-0123456789abcdef"})

	wants := []mlWant{
		{"dovecot.log", "127.0.3.1", rules.IMAP, alice, true, false},
		{"dovecot.log", "127.0.3.2", rules.IMAP, alice, false, false},
		{"dovecot.log", "127.0.3.3", rules.POP3, bob, true, false},
		{"dovecot.log", "127.0.3.4", rules.POP3, bob, false, false},
		{"dovecot.log", "127.0.3.5", rules.IMAP, "nobody@example.test", false, false},
		{"dovecot.log", "127.0.3.6", rules.IMAP, rules.NormalizeLogin(evil), false, false},
		{"maillog", "127.0.3.10", rules.SMTP, alice, true, false},
		{"maillog", "127.0.3.11", rules.SMTP, alice, false, false},
		{"maillog", "127.0.3.12", rules.SMTP, "nobody@example.test", false, false},
		{"nginx-error.log", "127.0.3.20", rules.OtherService, bob, true, false},
		{"nginx-error.log", "127.0.3.21", rules.OtherService, bob, false, false},
		{"nginx-error.log", "127.0.3.22", rules.OtherService, alice, false, false},
		{"nginx-error.log", "127.0.3.23", rules.OtherService, alice, false, false},
		{file: "dovecot.log", src: "127.0.3.7", service: rules.IMAP, anyLogin: true},
		{file: "maillog", src: "127.0.3.13", service: rules.SMTP, anyLogin: true},
		{file: "nginx-error.log", src: "127.0.3.24", service: rules.OtherService, anyLogin: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	a := netip.MustParseAddr
	var wg sync.WaitGroup
	run := func(name string, f func() error, wantOK bool) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := f()
			if wantOK && err != nil || !wantOK && err == nil {
				t.Errorf("%s: %v (want success %v)", name, err, wantOK)
			}
		}()
	}
	run("imap ok", func() error { return harness.IMAPLogin(ctx, a("127.0.3.1"), dc.IMAPAddr, alice, alicePW) }, true)
	run("imap wrong", func() error { return harness.IMAPLogin(ctx, a("127.0.3.2"), dc.IMAPAddr, alice, wrong) }, false)
	run("pop3 ok", func() error { return harness.POP3Login(ctx, a("127.0.3.3"), dc.POP3Addr, bob, bobPW) }, true)
	run("pop3 wrong", func() error { return harness.POP3Login(ctx, a("127.0.3.4"), dc.POP3Addr, bob, wrong) }, false)
	run("imap unknown", func() error {
		return harness.IMAPLogin(ctx, a("127.0.3.5"), dc.IMAPAddr, "nobody@example.test", wrong)
	}, false)
	run("imap injection", func() error { return harness.IMAPLogin(ctx, a("127.0.3.6"), dc.IMAPAddr, evil, wrong) }, false)
	run("imap newline", func() error { return harness.IMAPLogin(ctx, a("127.0.3.7"), dc.IMAPAddr, evilIMAPNL, wrong) }, false)
	run("smtp newline", func() error { return mlSMTP(ctx, "127.0.3.13", pf.SMTPAddr, evilSMTPNL, wrong, false) }, false)
	run("nginx imap newline", func() error { return harness.IMAPLogin(ctx, a("127.0.3.24"), ng.IMAPAddr, evilNginxNL, wrong) }, false)
	run("smtp ok", func() error { return mlSMTP(ctx, "127.0.3.10", pf.SMTPAddr, alice, alicePW, true) }, true)
	run("smtp wrong", func() error { return mlSMTP(ctx, "127.0.3.11", pf.SMTPAddr, alice, wrong, false) }, false)
	run("smtp unknown", func() error { return mlSMTP(ctx, "127.0.3.12", pf.SMTPAddr, "nobody@example.test", wrong, false) }, false)
	run("nginx imap ok", func() error { return harness.IMAPLogin(ctx, a("127.0.3.20"), ng.IMAPAddr, bob, bobPW) }, true)
	run("nginx imap wrong", func() error { return harness.IMAPLogin(ctx, a("127.0.3.21"), ng.IMAPAddr, bob, wrong) }, false)
	run("nginx pop3 wrong", func() error { return harness.POP3Login(ctx, a("127.0.3.22"), ng.POP3Addr, alice, wrong) }, false)
	run("nginx smtp wrong", func() error { return mlSMTP(ctx, "127.0.3.23", ng.SMTPAddr, alice, wrong, false) }, false)
	wg.Wait()

	files := map[string]func() string{
		"dovecot.log":     dc.Log,
		"maillog":         pf.MailLog,
		"nginx-error.log": ng.ErrorLog,
	}
	// Each program writes its line after answering the client: wait for
	// every outcome (the e2e timeout bounds the wait).
	var missing []mlWant
	for deadline := time.Now().Add(20 * time.Second); ; {
		missing = missing[:0]
		found := map[string][]maillog.Event{}
		for name, read := range files {
			found[name] = mlParse(read())
		}
		for _, w := range wants {
			if !mlHas(found[w.file], w) {
				missing = append(missing, w)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			// The forged address is in no event of any log.
			for name, evs := range found {
				for _, e := range evs {
					if e.Client == a("6.6.6.6") || e.Session == "forged" || e.Login == "forged" {
						t.Errorf("%s: forged event %+v", name, e)
					}
				}
			}
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, w := range missing {
		t.Errorf("%s: no event for %+v", w.file, w)
	}
	if t.Failed() {
		for name, read := range files {
			t.Logf("%s:\n%s", name, read())
		}
		return
	}
	if *updateMaillog {
		out := filepath.Join("..", "internal", "maillog", "testdata", "capture")
		for name, read := range files {
			text := mlScrub(read(), map[string]string{dc.Dir: "$DOVECOT", pf.Dir: "$POSTFIX", ng.Dir: "$NGINX"})
			if err := os.WriteFile(filepath.Join(out, name), []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		t.Logf("wrote %s", out)
	}
}

// mlSMTP authenticates with AUTH PLAIN from src and, when it succeeds and
// send is set, relays a message (Postfix logs a successful SASL login in
// the message's client= line).
func mlSMTP(ctx context.Context, src, addr, user, pass string, send bool) error {
	s, err := harness.DialSMTP(ctx, netip.MustParseAddr(src), addr)
	if err != nil {
		return err
	}
	defer s.Close()
	if r, err := s.Ehlo("capture.example.test"); err != nil || !r.OK() {
		return fmt.Errorf("ehlo: %v %v", r, err)
	}
	r, err := s.AuthPlain(user, pass)
	if err != nil || r.Code != 235 {
		return fmt.Errorf("auth: %v %v", r, err)
	}
	if send {
		if r, err := s.Send(user, "friend@remote.test", "capture"); err != nil || !r.OK() {
			return fmt.Errorf("send: %v %v", r, err)
		}
	}
	s.Quit()
	return nil
}

func mlParse(text string) []maillog.Event {
	var evs []maillog.Event
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var e maillog.Event
		if maillog.ParseLine(sc.Bytes(), time.Now(), &e) {
			evs = append(evs, e)
		}
	}
	return evs
}

func mlHas(evs []maillog.Event, w mlWant) bool {
	for _, e := range evs {
		if e.Client == netip.MustParseAddr(w.src) && e.Service == w.service && (w.anyLogin || e.Login == w.login) &&
			e.Success == w.success && (e.Success || e.Attempts >= 1) && !e.Time.IsZero() {
			return true
		}
	}
	return false
}

// mlScrub replaces the temp dirs in a captured log with names.
func mlScrub(text string, dirs map[string]string) string {
	for d, name := range dirs {
		text = strings.ReplaceAll(text, d, name)
	}
	return text
}

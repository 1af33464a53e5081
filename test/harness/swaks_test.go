package harness

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseSwaks checks the transcript parser on swaks 20201014.0's
// output: multi-line replies, refusals ("<** "), the message lines after
// DATA and the credentials hidden.
func TestParseSwaks(t *testing.T) {
	const out = `=== Trying 127.0.0.1:10025...
=== Connected to 127.0.0.1.
<-  220 mx.example.test ESMTP test
 -> EHLO client.example.test
<-  250-mx.example.test
<-  250-AUTH PLAIN LOGIN
<-  250 SMTPUTF8
 -> AUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABzM2NyM3Q=
<-  235 2.7.0 Authentication successful
 -> MAIL FROM:<a@remote.test>
<-  250 2.1.0 Ok
 -> RCPT TO:<x@remote.test>
<** 450 4.7.1 <x@remote.test>: Recipient address rejected: Too many
 -> RCPT TO:<bob@example.test>
<-  250 2.1.5 Ok
 -> DATA
<-  354 End data with <CR><LF>.<CR><LF>
 -> Date: Mon, 01 Jan 2026 00:00:00 +0000
 -> Subject: test
 -> 
 -> This is a test mailing
 -> 
 -> .
<-  250 2.0.0 Ok: queued as 4F1B2C3D
 -> QUIT
<-  221 2.0.0 Bye
=== Connection closed with remote host.
`
	red := redactSwaks(out, "s3cr3t")
	if strings.Contains(red, "AGFsaWNl") {
		t.Errorf("credentials not hidden:\n%s", red)
	}
	ex, err := parseSwaks(red)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		verb string
		code int
		text string
	}{
		{"", 220, "mx.example.test ESMTP test"},
		{"EHLO", 250, "mx.example.test\nAUTH PLAIN LOGIN\nSMTPUTF8"},
		{"AUTH", 235, "2.7.0 Authentication successful"},
		{"MAIL", 250, "2.1.0 Ok"},
		{"RCPT", 450, "4.7.1 <x@remote.test>: Recipient address rejected: Too many"},
		{"RCPT", 250, "2.1.5 Ok"},
		{"DATA", 354, "End data with <CR><LF>.<CR><LF>"},
		{".", 250, "2.0.0 Ok: queued as 4F1B2C3D"},
		{"QUIT", 221, "2.0.0 Bye"},
	}
	if len(ex) != len(want) {
		t.Fatalf("got %d exchanges, want %d: %+v", len(ex), len(want), ex)
	}
	for i, w := range want {
		if ex[i].Verb() != w.verb || ex[i].Reply.Code != w.code || ex[i].Reply.Text != w.text {
			t.Errorf("exchange %d = %q %v, want %s %d %q", i, ex[i].Command, ex[i].Reply, w.verb, w.code, w.text)
		}
	}
	r := &SwaksResult{Exchanges: ex}
	if !r.Accepted() || len(r.Replies("RCPT")) != 2 {
		t.Errorf("Accepted() = %v, RCPT replies %v", r.Accepted(), r.Replies("RCPT"))
	}
	for _, bad := range []string{"", "=== nothing\n", " -> EHLO x\n<-  25\n", "<-  250 ok\n<-  250 again\n"} {
		if _, err := parseSwaks(bad); err == nil {
			t.Errorf("parseSwaks(%q) succeeded, want an error", bad)
		}
	}
}

// TestSwaksPostfixPostLogin checks the harness pieces the Postfix tests
// use, without mailgate: swaks from a chosen source address against the
// harness's Postfix (refused relaying, local delivery, relaying after
// SMTP AUTH through Dovecot, a mix of accepted and refused recipients),
// an extra smtpd from PostfixOptions.MasterExtra, and a Dovecot post-login
// script (DovecotOptions.PostLogin) that sees the client's address, the
// login and its protocol argument, then runs the continuation.
func TestSwaksPostfixPostLogin(t *testing.T) {
	RequireSwaks(t)
	dir := TempDir(t, "pl-")
	envOut := filepath.Join(dir, "postlogin.env")
	script := filepath.Join(dir, "postlogin.sh")
	err := os.WriteFile(script, []byte(`#!/bin/sh
echo "proto=$1 ip=$IP user=$USER cont=$2" >> `+envOut+`
shift
exec "$@"
`), 0o755)
	if err != nil {
		t.Fatal(err)
	}
	dc := StartDovecot(t, DovecotOptions{
		Users:        map[string]string{"alice@example.test": "alicepw"},
		AuthListener: true,
		PostLogin:    map[string]string{"imap": script + " imap", "pop3": script + " pop3"},
	})
	extra := net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	pf := StartPostfix(t, PostfixOptions{
		DovecotSASL: dc.AuthAddr,
		Extra:       "harness_closed_restrictions = reject",
		MasterExtra: extra + " inet n - n - - smtpd\n  -o syslog_name=postfix/closed\n  -o smtpd_relay_restrictions=$harness_closed_restrictions\n",
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	swaks := func(o SwaksOptions) *SwaksResult {
		t.Helper()
		if o.From == "" {
			o.From = "sender@remote.test"
		}
		r, err := Swaks(ctx, o)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	rcpt := func(r *SwaksResult, i, code int, text string) {
		t.Helper()
		rs := r.Replies("RCPT")
		if len(rs) <= i || rs[i].Code != code || !strings.Contains(rs[i].Text, text) {
			t.Errorf("RCPT reply %d: got %v, want %d %q\n%s", i, rs, code, text, r)
		}
	}

	// Not authenticated, not in mynetworks: no relaying from loopback.
	r := swaks(SwaksOptions{Server: pf.SMTPAddr, Source: netip.MustParseAddr("127.0.0.231"), To: []string{"friend@remote.test"}})
	rcpt(r, 0, 554, "Relay access denied")
	if r.ExitCode != 24 || r.Accepted() {
		t.Errorf("refused relaying: exit %d, accepted %v; want 24, false", r.ExitCode, r.Accepted())
	}
	pf.WaitMailLog(t, "NOQUEUE: reject: RCPT from unknown[127.0.0.231]", "Relay access denied")

	// One recipient accepted (local domain), one refused: the message goes.
	r = swaks(SwaksOptions{Server: pf.SMTPAddr, Source: netip.MustParseAddr("127.0.0.232"),
		To: []string{"bob@example.test", "friend@remote.test"}})
	rcpt(r, 0, 250, "")
	rcpt(r, 1, 554, "Relay access denied")
	if !r.Accepted() {
		t.Errorf("message to a local recipient not accepted:\n%s", r)
	}

	// SMTP AUTH through Dovecot's auth service: relaying allowed.
	r = swaks(SwaksOptions{Server: pf.SMTPAddr, Source: netip.MustParseAddr("127.0.0.233"), To: []string{"friend@remote.test"},
		AuthUser: "alice@example.test", AuthPassword: "alicepw", Subject: "harness relay"})
	if !r.Accepted() || r.ExitCode != 0 {
		t.Errorf("authenticated relaying refused:\n%s", r)
	}
	if strings.Contains(r.Transcript, "alicepw") {
		t.Errorf("the transcript shows the password:\n%s", r.Transcript)
	}
	pf.WaitMailLog(t, "client=unknown[127.0.0.233]", "sasl_username=alice@example.test")

	// The extra smtpd refuses everything, with the restriction its -o
	// names.
	r = swaks(SwaksOptions{Server: extra, Source: netip.MustParseAddr("127.0.0.234"), To: []string{"bob@example.test"}, QuitAfter: "RCPT"})
	rcpt(r, 0, 554, "Access denied")
	pf.WaitMailLog(t, "postfix/closed/smtpd", "127.0.0.234")

	// The post-login script runs after each IMAP and POP3 login.
	if err := IMAPLogin(ctx, netip.MustParseAddr("127.0.0.235"), dc.IMAPAddr, "alice@example.test", "alicepw"); err != nil {
		t.Fatal(err)
	}
	if err := POP3Login(ctx, netip.MustParseAddr("127.0.0.236"), dc.POP3Addr, "alice@example.test", "alicepw"); err != nil {
		t.Fatal(err)
	}
	got := readFile(envOut)
	for _, want := range []string{
		"proto=imap ip=127.0.0.235 user=alice@example.test cont=/usr/lib/dovecot/script-login",
		"proto=pop3 ip=127.0.0.236 user=alice@example.test cont=/usr/lib/dovecot/script-login",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("post-login script output lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\n"); n != 2 {
		t.Errorf("post-login script ran %d times, want 2:\n%s", n, got)
	}
	if w := pf.Warnings(); len(w) > 0 {
		t.Errorf("postfix warnings:\n%s", strings.Join(w, "\n"))
	}
}

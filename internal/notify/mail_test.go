package notify

import (
	"bytes"
	"context"
	"io"
	"mime"
	"net/mail"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// headerNames are the headers Message writes, in order.
var headerNames = []string{"From", "To", "Subject", "Date", "Message-Id", "Mime-Version", "Content-Type", "Content-Transfer-Encoding", "Auto-Submitted", "X-Mailgate-Event"}

// checkMessage parses msg as a mail and checks that it has exactly
// Message's headers, one of each.
func checkMessage(t testing.TB, msg []byte) *mail.Message {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(msg))
	if err != nil {
		t.Fatalf("not a mail: %v\n%s", err, msg)
	}
	var names []string
	for k, v := range m.Header {
		if len(v) != 1 {
			t.Fatalf("header %s %d times:\n%s", k, len(v), msg)
		}
		names = append(names, k)
	}
	slices.Sort(names)
	want := slices.Clone(headerNames)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Fatalf("headers %q, want %q:\n%s", names, want, msg)
	}
	return m
}

// TestMailHeaderInjection: a login with CR/LF (an attacker types it at
// the IMAP prompt) cannot add a header or a recipient.
func TestMailHeaderInjection(t *testing.T) {
	for _, login := range []string{
		"evil\r\nBcc: victim@example.org",
		"evil\nBcc: victim@example.org",
		"evil\rBcc: victim@example.org",
		"evil\u2028Bcc: victim@example.org",
		"=?utf-8?q?x=0D=0ABcc:_victim@example.org?=",
		"ünïcödé\x00\x85x",
	} {
		e := Event{Kind: LoginBanned, Time: time.Unix(1_700_000_000, 0), Login: login, Addr: netip.MustParseAddr("203.0.113.9")}
		clean(&e)
		msg := Message("mailgate@example.com", []string{"admin@example.com"}, "[mailgate] "+e.Title(), e.Text(), e.Time, "mx1", e.Kind)
		m := checkMessage(t, msg)
		subj, err := new(mime.WordDecoder).DecodeHeader(m.Header.Get("Subject"))
		if err != nil {
			t.Fatalf("subject %q: %v", m.Header.Get("Subject"), err)
		}
		if strings.ContainsAny(subj, "\r\n") || !strings.Contains(subj, "Bcc") && strings.Contains(login, "Bcc") || strings.Contains(login, "=?") && !strings.Contains(subj, login) {
			t.Errorf("login %q: subject %q", login, subj)
		}
	}
}

// TestOwnerTemplateNoInjection: values are put into the template once; a
// login that reads like a placeholder stays as typed, and the owner's
// address must be at a configured domain.
func TestOwnerTemplateNoInjection(t *testing.T) {
	o := &Owner{Domains: []string{"example.com"}, Host: "mx1", Template: "L={login} I={ip} C={country}"}
	e := Event{Kind: NewCountry, Time: time.Unix(1_700_000_000, 0), Login: "{ip}{country}@example.com", Addr: netip.MustParseAddr("203.0.113.9"), Country: "BR"}
	_, body := o.Render(&e)
	if body != "L={ip}{country}@example.com I=203.0.113.9 C=BR" {
		t.Errorf("body %q", body)
	}
	for login, want := range map[string]string{
		"alice@example.com":     "alice@example.com",
		"Alice@EXAMPLE.com":     "Alice@EXAMPLE.com",
		"victim@gmail.com":      "",
		"alice":                 "",
		"-oQ/tmp@example.com":   "",
		"a b@example.com":       "",
		"\"x\"@example.com":     "",
		"alice@example.com\r\n": "",
	} {
		if got := o.Address(login); got != want {
			t.Errorf("Address(%q) = %q, want %q", login, got, want)
		}
	}
}

// TestSendmailArgs runs Deliver against a stand-in sendmail script that
// writes its arguments and input to files: the recipients are arguments
// after "--", the message is what Message builds. The real Postfix is in
// test/notify_test.go.
func TestSendmailArgs(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "sendmail")
	if err := os.WriteFile(script, []byte("#!/bin/sh\nprintf '%s\\n' \"$@\" > \""+dir+"/args\"\ncat > \""+dir+"/msg\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	m := &MailTarget{TargetName: "mail", Sendmail: []string{script, "-C", "/etc/x"}, From: "mailgate@example.com",
		To: []string{"admin@example.com", "ops@example.com"}, Timeout: 10 * time.Second, Host: "mx1"}
	e := Event{Kind: SendLimit, Time: time.Unix(1_700_000_000, 0), Login: "bob@example.com", Detail: "messages_per_hour 100"}
	if err := m.Deliver(context.Background(), &e); err != nil {
		t.Fatal(err)
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if got := strings.Fields(string(args)); !slices.Equal(got, []string{"-C", "/etc/x", "-i", "-f", "mailgate@example.com", "--", "admin@example.com", "ops@example.com"}) {
		t.Errorf("args %q", got)
	}
	msg, _ := os.ReadFile(filepath.Join(dir, "msg"))
	mm := checkMessage(t, msg)
	body, _ := io.ReadAll(mm.Body)
	if !strings.Contains(string(body), "bob@example.com reached messages_per_hour 100") {
		t.Errorf("body %q", body)
	}

	fail := filepath.Join(dir, "fail")
	os.WriteFile(fail, []byte("#!/bin/sh\necho 'postdrop: warning: unable to look up public/pickup' >&2\nexit 75\n"), 0o755)
	m.Sendmail = []string{fail}
	if err := m.Deliver(context.Background(), &e); err == nil || !strings.Contains(err.Error(), "unable to look up") {
		t.Errorf("a failing sendmail: %v", err)
	}
}

func TestCleanString(t *testing.T) {
	long := strings.Repeat("é", MaxField) // 2 bytes each
	if got := cleanString(long); len(got) > MaxField || !strings.HasSuffix(got, "é") {
		t.Errorf("cut %d bytes, ends %q", len(got), got[len(got)-2:])
	}
	if got := cleanString("a\r\nb\x00c\u2028d\xffe"); got != "a??b?c?d?e" {
		t.Errorf("got %q", got)
	}
}

// FuzzMessage: whatever the login and detail (attacker-chosen), the mail
// parses with exactly Message's headers, and the webhook JSON encodes.
func FuzzMessage(f *testing.F) {
	f.Add("alice@example.com", "messages_per_hour 100")
	f.Add("evil\r\nBcc: x@y", "a\nb")
	f.Add("=?utf-8?b?DQpCY2M6IHhAeQ==?=", "\x00")
	f.Add(strings.Repeat("ä", 300), "")
	f.Fuzz(func(t *testing.T, login, detail string) {
		e := Event{Kind: LoginBanned, Time: time.Unix(1_700_000_000, 0), Login: login, Detail: detail, Accounts: []string{login}}
		clean(&e)
		if len(e.Login) > MaxField || len(e.Detail) > MaxField {
			t.Fatalf("not cut: %d, %d", len(e.Login), len(e.Detail))
		}
		msg := Message("mailgate@example.com", []string{"admin@example.com"}, "[mailgate] "+e.Title(), e.Text(), e.Time, "mx1", e.Kind)
		checkMessage(t, msg)
		o := &Owner{Domains: []string{"example.com"}}
		subj, body := o.Render(&e)
		checkMessage(t, Message("mailgate@example.com", []string{"admin@example.com"}, subj, body, e.Time, "mx1", e.Kind))
		h := &HTTPTarget{Kind: Alertmanager}
		if _, err := h.Body(&e); err != nil {
			t.Fatal(err)
		}
		h.Kind = Webhook
		if _, err := h.Body(&e); err != nil {
			t.Fatal(err)
		}
	})
}

package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/mail"
	"os/exec"
	"strings"
	"time"
	"unicode/utf8"
)

// MailTarget mails events to fixed recipients through the local sendmail
// (sendmail -i -f FROM -- RCPT...: the recipients are arguments, never
// read from the message's headers).
type MailTarget struct {
	TargetName string
	Sendmail   []string // the program and its first arguments, e.g. ["/usr/sbin/sendmail"]
	From       string
	To         []string
	Events     []Kind // empty = all
	Timeout    time.Duration
	Policy     RetryPolicy
	Queue      int
	Host       string
}

func (m *MailTarget) Name() string       { return m.TargetName }
func (m *MailTarget) Retry() RetryPolicy { return m.Policy }
func (m *MailTarget) QueueLen() int      { return m.Queue }
func (m *MailTarget) Wants(k Kind) bool  { return wants(m.Events, k) }

// Deliver hands one message to sendmail.
func (m *MailTarget) Deliver(ctx context.Context, e *Event) error {
	subject := "[mailgate] " + e.Title()
	if m.Host != "" {
		subject = "[mailgate " + m.Host + "] " + e.Title()
	}
	body := e.Text() + "\n-- \nmailgate on " + m.Host + ", event " + string(e.Kind) + "\n"
	msg := Message(m.From, m.To, subject, body, e.Time, m.Host, e.Kind)
	return Sendmail(ctx, m.Sendmail, m.Timeout, m.From, m.To, msg)
}

// Message builds a plain-text mail. The header values come from cleaned
// events (no control characters, so no CR or LF to start a new header)
// and the subject is RFC 2047 encoded when it is not plain ASCII.
func Message(from string, to []string, subject, body string, at time.Time, host string, k Kind) []byte {
	var b bytes.Buffer
	id := make([]byte, 12)
	rand.Read(id)
	if host == "" {
		host = "localhost"
	}
	hdr := func(name, value string) {
		b.WriteString(name)
		b.WriteString(": ")
		b.WriteString(headerSafe(value))
		b.WriteString("\r\n")
	}
	hdr("From", from)
	hdr("To", strings.Join(to, ", "))
	hdr("Subject", encodeHeader(headerSafe(subject)))
	hdr("Date", at.Format(time.RFC1123Z))
	hdr("Message-ID", "<"+hex.EncodeToString(id)+".mailgate@"+headerSafe(host)+">")
	hdr("MIME-Version", "1.0")
	hdr("Content-Type", "text/plain; charset=utf-8")
	hdr("Content-Transfer-Encoding", "8bit")
	hdr("Auto-Submitted", "auto-generated") // RFC 3834: no vacation replies back
	hdr("X-Mailgate-Event", string(k))
	b.WriteString("\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r\n", "\n"), "\n", "\r\n"))
	return b.Bytes()
}

// encodeHeader returns s as it is when it is printable ASCII with no
// "=?"; otherwise as RFC 2047 encoded words (base64, at most 45 bytes of
// s each, cut at rune boundaries), so that an encoded word inside a
// login ("=?utf-8?q?=0D=0A...?=") is shown as typed, never decoded.
func encodeHeader(s string) string {
	plain := !strings.Contains(s, "=?")
	for i := 0; plain && i < len(s); i++ {
		plain = s[i] >= ' ' && s[i] < 0x7f
	}
	if plain {
		return s
	}
	var words []string
	for len(s) > 0 {
		n := min(len(s), 45)
		for n < len(s) && n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		if n == 0 {
			n = min(len(s), 45)
		}
		words = append(words, "=?utf-8?b?"+base64.StdEncoding.EncodeToString([]byte(s[:n]))+"?=")
		s = s[n:]
	}
	return strings.Join(words, " ")
}

// headerSafe replaces what would end a header line; a second defence
// behind clean.
func headerSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if unsafeRune(r) {
			return '?'
		}
		return r
	}, s)
}

// Sendmail runs argv (the sendmail program and its first arguments) with
// -i -f from -- rcpt... and msg on its standard input, bounded by
// timeout. Its output is kept (cut) for the error.
func Sendmail(ctx context.Context, argv []string, timeout time.Duration, from string, rcpt []string, msg []byte) error {
	if len(argv) == 0 || len(rcpt) == 0 {
		return &Permanent{errors.New("sendmail: no program or no recipient")}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args := append(append([]string{}, argv[1:]...), "-i", "-f", from, "--")
	args = append(args, rcpt...)
	cmd := exec.CommandContext(ctx, argv[0], args...)
	cmd.Stdin = bytes.NewReader(msg)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %q", argv[0], err, cleanString(strings.TrimSpace(out.b.String())))
	}
	return nil
}

// limitedBuffer keeps the first maxResponse bytes written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxResponse - l.b.Len(); room > 0 {
		l.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// CheckAddress reports whether s is one plain address (local@domain) fit
// for sendmail's command line and a To header: no display name, no
// control characters, no leading '-', at most 254 bytes.
func CheckAddress(s string) error {
	if s == "" || len(s) > 254 || strings.HasPrefix(s, "-") || strings.ContainsFunc(s, func(r rune) bool { return unsafeRune(r) || r == ' ' || r == ',' || r == '<' || r == '>' }) {
		return fmt.Errorf("%q is not a plain mail address", s)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || a.Name != "" || !strings.Contains(s, "@") {
		return fmt.Errorf("%q is not a plain mail address", s)
	}
	return nil
}

// Owner mails "login banned" and "new country" to the account itself.
type Owner struct {
	Sendmail   []string
	From       string
	Subject    string // placeholders as Template
	Template   string // the body: {login} {time} {ip} {country} {service} {what} {host}
	Domains    []string
	Addresses  map[string]string // login → address, checked first
	Every      time.Duration     // at most one mail per account and kind per Every
	MaxPerHour int               // owner mails over all accounts
	Timeout    time.Duration
	Policy     RetryPolicy
	Queue      int
	Host       string
}

func (o *Owner) Name() string       { return "owner" }
func (o *Owner) Retry() RetryPolicy { return o.Policy }
func (o *Owner) QueueLen() int      { return o.Queue }
func (o *Owner) Wants(k Kind) bool  { return k == LoginBanned || k == NewCountry }

// Address is where the owner of login is mailed: the configured address,
// or the login itself when it is an address in one of Domains (an
// attacker trying logins at other domains must not make the server mail
// strangers); "" when neither.
func (o *Owner) Address(login string) string {
	if a, ok := o.Addresses[strings.ToLower(login)]; ok {
		return a
	}
	if CheckAddress(login) != nil {
		return ""
	}
	_, dom, _ := strings.Cut(login, "@")
	for _, d := range o.Domains {
		if strings.EqualFold(dom, d) {
			return login
		}
	}
	return ""
}

// DefaultOwnerSubject and DefaultOwnerTemplate are the owner mail's texts
// when the config gives none.
const (
	DefaultOwnerSubject  = "Security notice for {login}"
	DefaultOwnerTemplate = `Hello,

this is the mail server {host}. {what}

Time:    {time}
Address: {ip}
Country: {country}
Service: {service}

If this was you, there is nothing to do.
If it was not you, change your password now and tell your mail administrator.
`
)

// what is the owner mail's sentence for e.
func what(e *Event) string {
	if e.Kind == LoginBanned {
		s := "Someone tried many wrong passwords for your account from several addresses, so logins to it from new addresses are blocked for a while"
		if !e.Until.IsZero() {
			s += " (until " + e.Until.UTC().Format(time.RFC1123) + ")"
		}
		return s + ". The devices you used before keep working."
	}
	return "Your account was logged in to from a country it was not used from before."
}

// Render fills the subject and body templates with e's values. The
// values are put in one pass: a login that reads "{ip}" stays as it is.
func (o *Owner) Render(e *Event) (subject, body string) {
	ip, cc, svc := "unknown", e.Country, e.Service
	if e.Addr.IsValid() {
		ip = e.Addr.String()
	}
	if cc == "" {
		cc = "unknown"
	}
	if svc == "" {
		svc = "unknown"
	}
	r := strings.NewReplacer("{login}", e.Login, "{time}", e.Time.UTC().Format(time.RFC1123), "{ip}", ip,
		"{country}", cc, "{service}", svc, "{what}", what(e), "{host}", o.Host)
	subj, tmpl := o.Subject, o.Template
	if subj == "" {
		subj = DefaultOwnerSubject
	}
	if tmpl == "" {
		tmpl = DefaultOwnerTemplate
	}
	return r.Replace(subj), r.Replace(tmpl)
}

// Deliver mails the owner of e.Login; an account without an address is
// a Permanent error (counted as failed, never retried).
func (o *Owner) Deliver(ctx context.Context, e *Event) error {
	to := o.Address(e.Login)
	if to == "" {
		return &Permanent{fmt.Errorf("owner: no address for login %q (not in notifications.owner.domains or addresses)", e.Login)}
	}
	subject, body := o.Render(e)
	msg := Message(o.From, []string{to}, subject, body, e.Time, o.Host, e.Kind)
	return Sendmail(ctx, o.Sendmail, o.Timeout, o.From, []string{to}, msg)
}

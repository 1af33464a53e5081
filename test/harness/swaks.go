package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SwaksPackages maps swaks, the SMTP test client the Postfix tests send
// with (Debian's swaks 20201014.0, as in protocols.md §5.3), to its
// package.
var SwaksPackages = map[string]string{"/usr/bin/swaks": "swaks"}

// SwaksOptions is one swaks run: one SMTP session from Source to Server.
type SwaksOptions struct {
	Server string     // host:port of the smtpd
	Source netip.Addr // the client's address (swaks -li), any 127.0.0.0/8 address
	// Ehlo is the EHLO name; "client.example.test" when empty.
	Ehlo string
	From string   // envelope sender
	To   []string // envelope recipients, one RCPT TO each
	// AuthUser and AuthPassword, when set, make swaks AUTH PLAIN after
	// EHLO.
	AuthUser, AuthPassword string
	// QuitAfter stops the session after that stage (swaks --quit-after:
	// "RCPT", "MAIL", "EHLO", "AUTH", ...); empty sends the message.
	QuitAfter string
	// Subject is the message's subject; empty uses swaks's default.
	Subject string
}

// SwaksExchange is one command of the session and the server's reply.
type SwaksExchange struct {
	// Command is the command line as sent ("RCPT TO:<bob@example.test>";
	// "." for the end of the message; "" for the greeting). Credentials
	// are replaced by a placeholder.
	Command string
	Reply   SMTPReply
}

// Verb is the command's first word in upper case ("RCPT", "." for the end
// of the message, "" for the greeting).
func (e SwaksExchange) Verb() string {
	v, _, _ := strings.Cut(e.Command, " ")
	if i := strings.IndexByte(v, ':'); i > 0 {
		v = v[:i]
	}
	return strings.ToUpper(v)
}

// SwaksResult is what a swaks run did.
type SwaksResult struct {
	// ExitCode is swaks's exit status: 0 when every stage succeeded,
	// otherwise the code of the stage that failed (23 MAIL, 24 RCPT (no
	// recipient accepted), 25 DATA, 26 end of message, 28 AUTH, ...).
	ExitCode int
	// Transcript is swaks's output with the credentials replaced.
	Transcript string
	Exchanges  []SwaksExchange
}

// Replies returns the replies to the commands with the verb ("RCPT",
// "MAIL", "DATA", "." (the message), "AUTH", "EHLO", "" (greeting)), in
// order.
func (r *SwaksResult) Replies(verb string) []SMTPReply {
	var out []SMTPReply
	for _, e := range r.Exchanges {
		if e.Verb() == verb {
			out = append(out, e.Reply)
		}
	}
	return out
}

// Accepted reports whether the message was accepted: the end of DATA got
// a 250.
func (r *SwaksResult) Accepted() bool {
	rs := r.Replies(".")
	return len(rs) == 1 && rs[0].Code == 250
}

func (r *SwaksResult) String() string {
	return fmt.Sprintf("swaks exit %d\n%s", r.ExitCode, r.Transcript)
}

// Swaks runs swaks for one SMTP session and parses its transcript. A
// refusal is a reply in the result, not an error; errors are a swaks that
// could not run or a transcript that does not parse. Swaks must be
// installed (RequireSwaks).
func Swaks(ctx context.Context, o SwaksOptions) (*SwaksResult, error) {
	host, port, err := net.SplitHostPort(o.Server)
	if err != nil {
		return nil, fmt.Errorf("swaks: server %q: %w", o.Server, err)
	}
	if o.Ehlo == "" {
		o.Ehlo = "client.example.test"
	}
	if len(o.To) == 0 {
		return nil, errors.New("swaks: no recipient")
	}
	args := []string{
		"--server", host, "--port", port,
		"--ehlo", o.Ehlo,
		"--from", o.From,
		"--to", strings.Join(o.To, ","),
		"--timeout", "20",
	}
	if o.Source.IsValid() {
		args = append(args, "-li", o.Source.String())
	}
	if o.AuthUser != "" {
		args = append(args, "--auth", "PLAIN", "--auth-user", o.AuthUser, "--auth-password", o.AuthPassword)
	}
	if o.QuitAfter != "" {
		args = append(args, "--quit-after", o.QuitAfter)
	}
	if o.Subject != "" {
		args = append(args, "--header", "Subject: "+o.Subject)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, "/usr/bin/swaks", args...)
	out, err := cmd.CombinedOutput()
	res := &SwaksResult{}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee) && ctx.Err() == nil:
		res.ExitCode = ee.ExitCode()
	case err != nil:
		return nil, fmt.Errorf("swaks %s: %w\n%s", strings.Join(redactArgs(args), " "), err, out)
	}
	res.Transcript = redactSwaks(string(out), o.AuthPassword)
	res.Exchanges, err = parseSwaks(res.Transcript)
	if err != nil {
		return res, fmt.Errorf("swaks transcript: %w\n%s", err, res.Transcript)
	}
	return res, nil
}

// RequireSwaks installs swaks if it is missing.
func RequireSwaks(t testing.TB) {
	t.Helper()
	Require(t, SwaksPackages)
}

// redactArgs hides the password argument.
func redactArgs(args []string) []string {
	out := append([]string(nil), args...)
	for i := range out {
		if i > 0 && out[i-1] == "--auth-password" {
			out[i] = "<password>"
		}
	}
	return out
}

// redactSwaks replaces the AUTH PLAIN credentials (base64 of the
// password) and the password itself in swaks's output.
func redactSwaks(out, password string) string {
	lines := strings.Split(out, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, " -> AUTH PLAIN ") || strings.HasPrefix(l, "**> AUTH PLAIN ") {
			lines[i] = l[:len(" -> AUTH PLAIN ")] + "<credentials>"
		}
		if password != "" {
			lines[i] = strings.ReplaceAll(lines[i], password, "<password>")
		}
	}
	return strings.Join(lines, "\n")
}

// parseSwaks splits swaks's transcript into exchanges. Swaks marks what
// the client sent with " -> " and what the server answered with "<- "
// (or "<** " for a refusal); "=== " lines are swaks's own notes and
// "*** " its errors. Message lines after DATA are sent without replies:
// the reply after them belongs to the last one, ".".
func parseSwaks(out string) ([]SwaksExchange, error) {
	var (
		ex      []SwaksExchange
		cmd     string
		texts   []string
		code    int
		pending bool // a command awaits its reply
	)
	greeting := true
	for _, raw := range strings.Split(out, "\n") {
		line := strings.TrimRight(raw, "\r")
		switch {
		case strings.HasPrefix(line, " -> ") || strings.HasPrefix(line, "**> "):
			cmd, pending, greeting = line[4:], true, false
		case strings.HasPrefix(line, "<-  ") || strings.HasPrefix(line, "<** "):
			if !pending && !greeting {
				return ex, fmt.Errorf("reply %q to no command", line)
			}
			r := line[4:]
			if len(r) < 3 {
				return ex, fmt.Errorf("malformed reply line %q", line)
			}
			c, err := strconv.Atoi(r[:3])
			if err != nil || c < 100 || c > 599 || (code != 0 && c != code) {
				return ex, fmt.Errorf("malformed reply line %q", line)
			}
			code = c
			sep, text := byte(' '), ""
			if len(r) > 3 {
				sep, text = r[3], r[4:]
			}
			texts = append(texts, text)
			if sep == '-' {
				continue
			}
			c0 := cmd
			if greeting {
				c0 = ""
			}
			ex = append(ex, SwaksExchange{Command: c0, Reply: SMTPReply{Code: code, Text: strings.Join(texts, "\n")}})
			code, texts, pending, greeting = 0, nil, false, false
		}
	}
	if len(ex) == 0 {
		return nil, errors.New("no SMTP reply in swaks's output")
	}
	return ex, nil
}

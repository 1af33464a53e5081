package passcheck

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"errors"
	"io"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestTabEscape(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain", "plain"},
		{"a\tb", "a\x01tb"},
		{"a\nb\rc", "a\x01nb\x01rc"},
		{"\x01", "\x011"},
		{"\x01t", "\x011t"},
		{"x\x00y", "x\x00y"}, // NUL is not escaped on the way out: callers refuse it
		{"ü€", "ü€"},
	} {
		got := string(appendTabEscaped(nil, tc.in))
		if got != tc.want {
			t.Errorf("escape(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if back := tabUnescape([]byte(got)); back != tc.in {
			t.Errorf("unescape(escape(%q)) = %q", tc.in, back)
		}
	}
	for in, want := range map[string]string{
		"\x010":    "\x00",
		"\x01x":    "x",
		"a\x01":    "a\x01", // a lone trailing escape stays
		"\x01\x01": "\x01",
	} {
		if got := tabUnescape([]byte(in)); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseReply(t *testing.T) {
	for _, tc := range []struct {
		line    string
		want    *reply // nil: must fail
		temp    bool
		errPart string
	}{
		{line: "OK\t1", want: &reply{Kind: "OK", ID: 1}},
		{line: "OK\t7\tuser=alice@example.test", want: &reply{Kind: "OK", ID: 7, Fields: map[string]string{"user": "alice@example.test"}}},
		{line: "FAIL\t4294967295\tuser=bob\ttemp\treason=try\x01tagain",
			want: &reply{Kind: "FAIL", ID: 4294967295, Fields: map[string]string{"user": "bob", "temp": "", "reason": "try\tagain"}}, temp: true},
		{line: "FAIL\t3\tcode=temp_fail", want: &reply{Kind: "FAIL", ID: 3, Fields: map[string]string{"code": "temp_fail"}}, temp: true},
		{line: "FAIL\t3\tuser=x\tcode=authz_fail\t\t=v", want: &reply{Kind: "FAIL", ID: 3, Fields: map[string]string{"user": "x", "code": "authz_fail"}}},
		{line: "CONT\t2\tAAAA", want: &reply{Kind: "CONT", ID: 2, Data: "AAAA"}},
		{line: "CONT\t2", want: &reply{Kind: "CONT", ID: 2}},
		{line: "", errPart: `unexpected command ""`},
		{line: "DONE", errPart: `unexpected command "DONE"`},
		{line: "ok\t1", errPart: `unexpected command (2 bytes, not shown)`},
		{line: "AUTH\t1\tPLAIN\tservice=imap\tresp=AGEAYg==", errPart: `unexpected command "AUTH"`},
		{line: "OK", errPart: "bad id"},
		{line: "OK\t0", errPart: "bad id"},
		{line: "OK\t01", errPart: "bad id"},
		{line: "OK\t-1", errPart: "bad id"},
		{line: "OK\t4294967296", errPart: "bad id"},
		{line: "FAIL\tx1\tuser=a", errPart: "bad id (2 bytes, not shown)"},
		{line: "FAIL\tAGFsaWNlAHB3\tuser=a", errPart: "bad id (12 bytes, not shown)"},
		{line: "CONT\t1\ta\tb", errPart: "more than one data field"},
		{line: "OK\t1" + strings.Repeat("\tf", maxFields+1), errPart: "fields"},
	} {
		got, err := parseReply([]byte(tc.line))
		if tc.want == nil {
			if err == nil || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), tc.errPart) {
				t.Errorf("parseReply(%q) = %+v, %v; want a protocol error with %q", tc.line, got, err, tc.errPart)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseReply(%q): %v", tc.line, err)
			continue
		}
		if got.Kind != tc.want.Kind || got.ID != tc.want.ID || got.Data != tc.want.Data || !maps.Equal(got.Fields, tc.want.Fields) {
			t.Errorf("parseReply(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
		if got.Temporary() != tc.temp {
			t.Errorf("parseReply(%q).Temporary() = %v", tc.line, got.Temporary())
		}
	}
	// A long reason must not reach an error message whole.
	long := "OK\t1" + strings.Repeat("x", 100)
	if _, err := parseReply([]byte(long)); err == nil || len(err.Error()) > 100 {
		t.Errorf("parseReply(long) error %q is too long or missing", err)
	}
}

// FuzzParseReply checks that any line parses without panicking, that what
// parses is an OK, FAIL or CONT with a non-zero id, and that re-rendering
// a parsed reply parses to the same reply.
func FuzzParseReply(f *testing.F) {
	for _, s := range []string{
		"OK\t1\tuser=alice@example.test",
		"FAIL\t2\tuser=bob@example.test",
		"FAIL\t3\ttemp\treason=Temporary\x01tfailure",
		"FAIL\t9\tcode=temp_fail",
		"CONT\t4\tAGFsaWNlAHB3",
		"OK\t4294967295",
		"VERSION\t1\t2",
		"OK\t01",
		"OK\t1\t\x01",
		"FAIL\t5\t=x\ty=\tz\x01=",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := parseReply(line)
		if err != nil {
			if !errors.Is(err, ErrProtocol) {
				t.Fatalf("error %v does not wrap ErrProtocol", err)
			}
			return
		}
		if r.ID == 0 || (r.Kind != replyOK && r.Kind != replyFail && r.Kind != replyCont) {
			t.Fatalf("parsed %+v", r)
		}
		// Re-render: names holding '=' cannot be rendered back.
		b := []byte(r.Kind + "\t" + strconv.FormatUint(uint64(r.ID), 10))
		if r.Data != "" {
			b = append(b, '\t')
			b = append(b, r.Data...)
		}
		for _, name := range slices.Sorted(maps.Keys(r.Fields)) {
			if strings.Contains(name, "=") {
				return
			}
			b = append(b, '\t')
			b = appendTabEscaped(b, name)
			if v := r.Fields[name]; v != "" {
				b = append(b, '=')
				b = appendTabEscaped(b, v)
			}
		}
		r2, err := parseReply(b)
		if err != nil {
			t.Fatalf("re-rendered %q of %q: %v", b, line, err)
		}
		if r2.Kind != r.Kind || r2.ID != r.ID || r2.Data != r.Data || !maps.Equal(r2.Fields, r.Fields) {
			t.Fatalf("%q parsed to %+v, re-rendered %q to %+v", line, r, b, r2)
		}
	})
}

// FuzzTabEscape checks that unescaping undoes escaping and that an escaped
// value never contains a TAB, CR or LF.
func FuzzTabEscape(f *testing.F) {
	for _, s := range []string{"", "a\tb", "\x01t", "\r\n", "ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e := appendTabEscaped(nil, s)
		if strings.ContainsAny(string(e), "\t\r\n") {
			t.Fatalf("escape(%q) = %q", s, e)
		}
		if got := tabUnescape(e); got != s {
			t.Fatalf("unescape(escape(%q)) = %q", s, got)
		}
	})
}

func TestReadLine(t *testing.T) {
	const max = 100
	in := "short\n" + "crlf\r\n" + strings.Repeat("a", max) + "\n" + strings.Repeat("b", max+1) + "\nafter\n"
	br := bufio.NewReaderSize(strings.NewReader(in), 16)
	for _, want := range []string{"short", "crlf", strings.Repeat("a", max)} {
		got, err := readLine(br, max, true)
		if err != nil || string(got) != want {
			t.Fatalf("readLine = %q, %v; want %q", got, err, want)
		}
	}
	if _, err := readLine(br, max, true); !errors.Is(err, errLineTooLong) {
		t.Fatalf("overlong line: %v, want errLineTooLong", err)
	}
	// Without trimCR the CR stays; EOF without LF is an error.
	br = bufio.NewReader(strings.NewReader("x\r\nno newline"))
	if got, _ := readLine(br, max, false); string(got) != "x\r" {
		t.Errorf("readLine without trimCR = %q", got)
	}
	if _, err := readLine(br, max, false); !errors.Is(err, io.EOF) {
		t.Errorf("unterminated line: %v, want EOF", err)
	}
	// A huge line is refused without reading all of it into memory.
	br = bufio.NewReaderSize(io.MultiReader(strings.NewReader(strings.Repeat("c", 10*MaxLineLen)), strings.NewReader("\n")), 4096)
	if _, err := readLine(br, MaxLineLen, false); !errors.Is(err, errLineTooLong) {
		t.Errorf("huge line: %v", err)
	}
}

func TestBuildAuth(t *testing.T) {
	r := &Request{
		Service:    "smtp",
		Login:      "ali\tce@example.test",
		Password:   "p\x01w\n",
		Client:     netip.MustParseAddr("::ffff:198.51.100.20"),
		ClientPort: 41055,
		Local:      netip.MustParseAddr("fe80::1%eth0"),
		TLS:        true,
		Session:    "s\tid",
	}
	line := string(buildAuth(42, r))
	resp := base64.StdEncoding.EncodeToString([]byte("\x00ali\tce@example.test\x00p\x01w\n"))
	want := "AUTH\t42\tPLAIN\tservice=smtp\tnologin\tsecured\tlip=fe80::1\trip=198.51.100.20\trport=41055\tsession=s\x01tid\tresp=" + resp + "\n"
	if line != want {
		t.Errorf("buildAuth =\n%q\nwant\n%q", line, want)
	}
	// Minimal request: no optional fields.
	line = string(buildAuth(1, &Request{Service: "imap", Login: "a", Password: "b"}))
	if want := "AUTH\t1\tPLAIN\tservice=imap\tnologin\tresp=AGEAYg==\n"; line != want {
		t.Errorf("buildAuth = %q, want %q", line, want)
	}
}

// TestPwHash checks the four values captured from Dovecot 2.3.19.1 with
// auth_policy_hash_nonce = s3cr3t-nonce (protocols.md §1.3, §1.6).
func TestPwHash(t *testing.T) {
	nonce := []byte("s3cr3t-nonce")
	for _, tc := range []struct{ login, password, want string }{
		{"alice@example.test", "alicepw", "06ca"},
		{"alice@example.test", "wrongpw", "0da9"},
		{"bob@example.test", "bobpw", "04c3"},
		{"bob@example.test", `p"w`, "08ce"},
	} {
		if got := PwHash(nonce, tc.login, tc.password); got != tc.want {
			t.Errorf("PwHash(%q, %q) = %q, want %q", tc.login, tc.password, got, tc.want)
		}
	}
	// The separator matters: ("ab", "c") and ("a", "bc") differ, and so do
	// nonces.
	if PwHash(nonce, "ab", "c") == PwHash(nonce, "a", "bc") && PwHash(nonce, "ab", "cd") == PwHash(nonce, "a", "bcd") {
		t.Error("PwHash ignores the login/password boundary")
	}
}

func TestAcceptable(t *testing.T) {
	ok := Request{Login: "a", Password: "b"}
	if !acceptable(&ok) {
		t.Error("plain request refused")
	}
	for name, r := range map[string]Request{
		"empty login":     {Password: "b"},
		"empty password":  {Login: "a"},
		"NUL in login":    {Login: "a\x00b", Password: "c"},
		"NUL in password": {Login: "a", Password: "b\x00"},
		"long login":      {Login: strings.Repeat("a", MaxLoginLen+1), Password: "b"},
		"long password":   {Login: "a", Password: strings.Repeat("b", MaxPasswordLen+1)},
	} {
		if acceptable(&r) {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzIMAPResponse feeds arbitrary server output to the IMAP response
// reader and status parser: no panic, no response over MaxLineLen.
func FuzzIMAPResponse(f *testing.F) {
	for _, s := range []string{
		"* OK [CAPABILITY IMAP4rev1 LITERAL+] Dovecot ready.\r\n",
		"* ID (\"name\" {7}\r\nDovecot)\r\nm1 OK ID completed.\r\n",
		"m2 NO [AUTHENTICATIONFAILED] Authentication failed.\r\n",
		"m2 NO [UNAVAILABLE\r\n",
		"* BYE\r\n+ go ahead\r\n",
		"* X {99999999999999999999}\r\n",
		"* X {-1}\r\n",
		"* X {5}\r\nab",
		"m2 ok\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s := &imapConn{br: bufio.NewReaderSize(bytes.NewReader(data), 4096)}
		for range 100 {
			line, err := s.readResponse()
			if err != nil {
				return
			}
			if len(line) > MaxLineLen {
				t.Fatalf("response of %d bytes", len(line))
			}
			status, code, _ := splitStatus(line)
			if strings.Contains(status, " ") || strings.ContainsAny(code, " ]") {
				t.Fatalf("splitStatus(%q) = %q, %q", line, status, code)
			}
			untagged(line)
			capabilityList(line)
		}
	})
}

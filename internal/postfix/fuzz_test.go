package postfix

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"unicode/utf8"

	"mailgate/internal/policy"
)

// fuzzHandler is a handler over a real engine with rules, a ban, permits
// and limits, and messages that quote the login (which comes from the
// wire), so that every answer kind can come out of the fuzzed input.
func fuzzHandler(t testing.TB) *Handler {
	msgs := policy.Messages{"global_deny": "{login} from {ip} \r\n", "send_limit": "{login}"}
	e := newEngineMsgs(t, []string{
		"global all deny 10.0.0.0/8",
		"alice@example.test smtp allow 192.0.2.0/24",
		"bob@example.test smtp allow none",
	}, []string{"2001:db8::/32"}, msgs)
	ev := &env{permits: &fakePermits{}, limits: newFakeLimits()}
	ev.permits.add("127.0.0.0/8", "carol@example.test")
	ev.permits.add("2001:db8::/64", "dave@example.test")
	ev.limits.set("carol@example.test", 0, "recipients_per_hour")
	return NewHandler(DefaultConfig(), e, ev.permits, ev.limits, nil, nil)
}

// checkAction checks a policy answer: a known access(5) action, one
// line, bounded, valid UTF-8.
func checkAction(t *testing.T, a string) {
	t.Helper()
	switch {
	case a == "OK" || a == "DUNNO":
	case strings.HasPrefix(a, "REJECT "), strings.HasPrefix(a, "DEFER_IF_PERMIT "):
		_, text, _ := strings.Cut(a, " ")
		if strings.TrimSpace(text) == "" || len(text) > maxText {
			t.Fatalf("answer %q: text empty or over %d bytes", a, maxText)
		}
	default:
		t.Fatalf("answer %q: not an action mailgate gives", a)
	}
	if strings.ContainsFunc(a, func(r rune) bool { return r < 0x20 || r == 0x7f }) || !utf8.ValidString(a) {
		t.Fatalf("answer %q: control characters or invalid UTF-8", a)
	}
}

// FuzzPolicyRequest reads requests from arbitrary bytes, as a connection
// would, with two buffer sizes that must agree, and answers each through
// a handler over a real engine. Requests must respect the limits, errors
// must be the documented ones, answers must be well-formed actions. The
// seed corpus is in testdata/fuzz/FuzzPolicyRequest (the capture of
// protocols.md §3.2 in several forms, and violations).
func FuzzPolicyRequest(f *testing.F) {
	f.Add([]byte(capture))
	f.Add([]byte(pfRequest(map[string]string{"sasl_username": "alice@example.test", "client_address": "::1"}) + capture))
	f.Add([]byte(pfRequest(map[string]string{"policy_context": "relaycheck"})))
	f.Add([]byte("request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=10.1.2.3\nsasl_username=x\n\n"))
	f.Add([]byte("request=smtpd_access_policy\r\nclient_address\r\n\r\n"))
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		small := bufio.NewReaderSize(bytes.NewReader(in), 16)
		big := bufio.NewReaderSize(bytes.NewReader(in), readBufSize)
		for {
			var r1, r2 Request
			err1 := ReadRequest(small, &r1)
			err2 := ReadRequest(big, &r2)
			if r1 != r2 || !sameErr(err1, err2) {
				t.Fatalf("buffer sizes disagree:\n%+v %v\n%+v %v", r1, err1, r2, err2)
			}
			if err1 != nil {
				for _, known := range []error{io.EOF, io.ErrUnexpectedEOF, ErrLineTooLong, ErrTooManyAttributes, ErrRequestTooLarge, ErrMalformed} {
					if errors.Is(err1, known) {
						return
					}
				}
				t.Fatalf("undocumented error %v", err1)
			}
			if r1.Attributes > MaxAttributes {
				t.Fatalf("%d attributes", r1.Attributes)
			}
			for _, v := range []string{r1.Request, r1.ProtocolState, r1.ClientAddress, r1.SASLUsername, r1.EncryptionProtocol, r1.PolicyContext, r1.Instance} {
				if len(v) > MaxLineLen || strings.Contains(v, "\n") {
					t.Fatalf("value %q", v)
				}
			}
			for _, relayOnly := range []bool{false, true} {
				a := h.Policy(&r1, relayOnly, testNow)
				checkAction(t, a)
				// A relay check never REJECTs (it also sees mail to local
				// domains), unless a permit holder is over a sending limit.
				if relayOnly && a != "OK" && a != "DUNNO" && !strings.HasPrefix(a, "DEFER_IF_PERMIT ") {
					t.Fatalf("relay check answered %q", a)
				}
			}
		}
	})
}

func sameErr(a, b error) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Error() == b.Error()
}

// FuzzSocketmap serves a socketmap conversation from arbitrary bytes:
// netstrings are read as the server reads them and answered as it
// answers; every answer must be a well-formed reply that reads back as
// the netstring it was written as. The seed corpus is in
// testdata/fuzz/FuzzSocketmap.
func FuzzSocketmap(f *testing.F) {
	f.Add([]byte("17:clientmap unknown,20:clientmap 127.0.0.91,13:clientmap ::1,"))
	f.Add([]byte("17:client 127.0.0.91,16:block 10.9.8.7,18:relay 2001:db8::1,"))
	f.Add([]byte("0:,6:client,"))
	f.Add([]byte("00012:client ::1 x,99999999:"))
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, in []byte) {
		br := bufio.NewReader(bytes.NewReader(in))
		var buf, out []byte
		for {
			p, err := readNetstring(br, buf, MaxSocketmapRequest)
			if err != nil {
				if err != io.EOF && err != io.ErrUnexpectedEOF && !errors.Is(err, ErrNetstring) {
					t.Fatalf("undocumented error %v", err)
				}
				return
			}
			if len(p) > MaxSocketmapRequest {
				t.Fatalf("payload of %d bytes", len(p))
			}
			buf = p
			reply := h.socketmapReply(p, testNow)
			switch {
			case reply == "NOTFOUND ", strings.HasPrefix(reply, "PERM "):
			case strings.HasPrefix(reply, "OK "):
				checkAction(t, reply[3:])
			default:
				t.Fatalf("reply %q", reply)
			}
			out = appendNetstring(out[:0], reply)
			back, err := readNetstring(bufio.NewReader(bytes.NewReader(out)), nil, 100000)
			if err != nil || string(back) != reply {
				t.Fatalf("netstring %q reads back as %q, %v", out, back, err)
			}
		}
	})
}

// FuzzTCPTable answers arbitrary tcp_table request lines in each map:
// replies are "200 ", "400 " or "500 " and a %XX-encoded text Postfix
// can decode, within 4096 bytes with the newline; hexQuote and
// hexUnquote are inverse. The seed corpus is in testdata/fuzz/FuzzTCPTable.
func FuzzTCPTable(f *testing.F) {
	for _, s := range []string{"get unknown", "get 127.0.0.91", "get ::1", "get a%20key%25with%20space", "get 10.0.0.1", "get %3a%3a1", "put x y", "get %zz", "get "} {
		f.Add([]byte(s))
	}
	h := fuzzHandler(f)
	f.Fuzz(func(t *testing.T, line []byte) {
		if len(line) > MaxTCPLine {
			return // readTCPLine refuses these
		}
		for _, m := range []string{MapRelay, MapBlock, MapClient} {
			reply := h.tcpReply(line, m, testNow)
			if len(reply)+1 > MaxTCPLine || len(reply) < 4 || reply[3] != ' ' {
				t.Fatalf("reply %q", reply)
			}
			for i := 0; i < len(reply); i++ {
				if i != 3 && mustQuote(reply[i]) && reply[i] != '%' {
					t.Fatalf("reply %q: byte %q not encoded", reply, reply[i])
				}
			}
			text, ok := hexUnquote([]byte(reply[4:]))
			if !ok {
				t.Fatalf("reply %q: Postfix cannot decode it", reply)
			}
			switch reply[:3] {
			case "200":
				checkAction(t, text)
			case "400", "500":
			default:
				t.Fatalf("reply %q", reply)
			}
		}
		if back, ok := hexUnquote([]byte(hexQuote(string(line)))); !ok || back != string(line) {
			t.Fatalf("hexQuote round trip: %q → %q %v", line, back, ok)
		}
	})
}

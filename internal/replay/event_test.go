package replay

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"mailgate/internal/rules"
)

func TestParseEvent(t *testing.T) {
	var ev Event
	line := `{"time":"2026-12-01T08:00:00+01:00","door":"nginx","service":"POP3","login":" Alice@Example.ORG ","address":"::ffff:192.0.2.1","pwhash":"a1b2c3d4","result":"failure","actor":"attacker"}`
	if err := ParseEvent([]byte(line), &ev); err != nil {
		t.Fatal(err)
	}
	want := Event{
		Time: time.Date(2026, 12, 1, 7, 0, 0, 0, time.UTC), Door: "nginx", Service: rules.POP3,
		Login: "alice@example.org", Client: netip.MustParseAddr("192.0.2.1"), PwHash: "a1b2c3d4",
		Result: Failure, Actor: Attacker, Count: 1,
	}
	if !ev.Time.Equal(want.Time) {
		t.Errorf("time %v, want %v", ev.Time, want.Time)
	}
	ev.Time = want.Time
	if ev != want {
		t.Errorf("got %+v\nwant %+v", ev, want)
	}

	// The least: time, service, address. Door defaults to dovecot; no
	// result is decide-only.
	if err := ParseEvent([]byte(`{"time":"2026-12-01T08:00:00Z","service":"imap","address":"2001:db8::1"}`+"\r\n"), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Door != "dovecot" || ev.Result != NoResult || ev.Actor != Unlabeled || ev.Login != "" {
		t.Errorf("defaults: %+v", ev)
	}
	// Escapes, null as absent, white space.
	if err := ParseEvent([]byte(` { "time" : "2026-12-01T08:00:00Z" , "service":"imap","address":"192.0.2.1","login":"b\u00f6b\/x","pwhash":null } `), &ev); err != nil {
		t.Fatal(err)
	}
	if ev.Login != "böb/x" || ev.PwHash != "" {
		t.Errorf("escapes: %+v", ev)
	}
}

// The fast paths for times and addresses agree with the standard
// library's parsers.
func TestParseTimeAddr(t *testing.T) {
	for _, s := range []string{"2026-12-01T08:00:00Z", "2026-12-01T08:00:00.5Z", "2026-12-01T08:00:00.123456789+05:30",
		"2026-12-01T23:59:59-12:00", "2024-02-29T00:00:00Z", "2026-12-01t08:00:00z", "2026-12-01T08:00:00.1234567891Z",
		"2026-02-30T00:00:00Z", "2026-12-01T24:00:00Z", "2026-12-01T08:00:60Z", "2026-12-01T08:00:00+24:00", "2026-12-01T08:00:00.Z", "2026-1-01T08:00:00Z"} {
		got, ok := parseTime([]byte(s))
		want, err := time.Parse(time.RFC3339Nano, s)
		if ok != (err == nil) || (ok && !got.Equal(want)) {
			t.Errorf("parseTime(%q) = %v, %v; time.Parse: %v, %v", s, got, ok, want, err)
		}
		if ok && got.Location() != time.UTC {
			t.Errorf("parseTime(%q) is not in UTC", s)
		}
	}
	for _, s := range []string{"192.0.2.1", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1.2.3.", ".1.2.3",
		"1..2.3", "1.2.3.4 ", "::ffff:192.0.2.1", "2001:db8::1", "fe80::1%eth0", "1.2.3.0004", ""} {
		got, ok := parseAddr([]byte(s))
		want, err := netip.ParseAddr(s)
		if ok != (err == nil && want.Zone() == "") || (ok && got != want.Unmap()) {
			t.Errorf("parseAddr(%q) = %v, %v; netip: %v, %v", s, got, ok, want, err)
		}
	}
}

func TestParseEventErrors(t *testing.T) {
	base := `"time":"2026-12-01T08:00:00Z","service":"imap","address":"192.0.2.1"`
	for _, tt := range []struct{ line, want string }{
		{``, "not a JSON object"},
		{`[1]`, "not a JSON object"},
		{`{` + base, "want ',' or '}'"},
		{`{` + base + `}{}`, "more after the object's end"},
		{`{` + base + `,"adress":"x"}`, `unknown field "adress"`},
		{`{` + base + `,"time":"2026-12-01T08:00:00Z"}`, "time: given twice"},
		{`{` + base + `,"result":1}`, "result: must be a string"},
		{`{` + base + `,"result":"ok"}`, `result: "ok" is not`},
		{`{` + base + `,"actor":"bot"}`, `actor: "bot" is not`},
		{`{` + base + `,"door":"exim"}`, `door: "exim" is not one of dovecot, nginx, postfix`},
		{`{"service":"imap","address":"192.0.2.1"}`, "time: missing"},
		{`{"time":"yesterday","service":"imap","address":"192.0.2.1"}`, `time: "yesterday" is not an RFC 3339 time`},
		{`{"time":"0001-01-01T00:00:00Z","service":"imap","address":"192.0.2.1"}`, "out of range"},
		{`{"time":"2026-12-01T08:00:00Z","address":"192.0.2.1"}`, "service: missing"},
		{`{"time":"2026-12-01T08:00:00Z","service":"all","address":"192.0.2.1"}`, `service: "all" is not`},
		{`{"time":"2026-12-01T08:00:00Z","service":"imap"}`, "address: missing"},
		{`{"time":"2026-12-01T08:00:00Z","service":"imap","address":"192.0.2.300"}`, `address: "192.0.2.300" is not an IP address`},
		{`{"time":"2026-12-01T08:00:00Z","service":"imap","address":"fe80::1%eth0"}`, "is not an IP address"},
		{`{` + base + `,"login":"a\nb"}`, "login: holds a control character"},
		{`{` + base + `,"login":"` + strings.Repeat("a", 321) + `"}`, "login: longer than 320 bytes"},
		{`{` + base + `,"login":"a` + "\xff" + `"}`, "not valid UTF-8"},
		{`{` + base + `,"login":"\ud800"}`, "lone UTF-16 surrogate"},
		{`{` + base + `,"login":"\x"}`, `a bad escape \x`},
		{`{` + base + `,"login":"abc`, "the string is not closed"},
		{`{` + base + `,"pwhash":"` + strings.Repeat("f", 129) + `"}`, "pwhash: longer than 128 bytes"},
		{`{` + base + `,"login":"` + strings.Repeat("a", MaxLineLen) + `"}`, "longer than 4096 bytes"},
	} {
		var ev Event
		err := ParseEvent([]byte(tt.line), &ev)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("ParseEvent(%.80q) = %v, want an error with %q", tt.line, err, tt.want)
		}
	}
	// An error never quotes the pwhash.
	var ev Event
	err := ParseEvent([]byte(`{"pwhash":"s3cr3tHash","time":"x"}`), &ev)
	if err == nil || strings.Contains(err.Error(), "s3cr3tHash") {
		t.Errorf("error %v quotes the pwhash", err)
	}
}

// FuzzParseEvent: the parser never panics; what it accepts is valid
// JSON that encoding/json reads as the same object, with a valid event;
// its errors are short.
func FuzzParseEvent(f *testing.F) {
	f.Add([]byte(`{"time":"2026-12-01T08:00:00Z","service":"imap","login":"alice@example.org","address":"192.0.2.1","pwhash":"a1b2c3d4","result":"failure","actor":"attacker"}`))
	f.Add([]byte(`{"time":"2026-12-01T08:00:00.5+02:00","door":"postfix","service":"submission","address":"::ffff:192.0.2.1","login":"\u00e9\ud83d\ude00","result":"success"}`))
	f.Add([]byte(`{"time":"2026-12-01T08:00:00Z","service":"imap","address":"2001:db8::1","login":null,"result":""}`))
	f.Fuzz(func(t *testing.T, line []byte) {
		var ev Event
		err := ParseEvent(line, &ev)
		if err != nil {
			if len(err.Error()) > 300 {
				t.Fatalf("error of %d bytes", len(err.Error()))
			}
			return
		}
		if !json.Valid(line) {
			t.Fatalf("accepted invalid JSON %q", line)
		}
		var m map[string]*string
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("accepted %q, encoding/json: %v", line, err)
		}
		if ev.Time.IsZero() || !ev.Client.IsValid() || ev.Client.Is4In6() || ev.Client.Zone() != "" ||
			ev.Service == rules.AllServices || ev.Count != 1 || !utf8.ValidString(ev.Login) || len(ev.Login) > rules.MaxAccountLen {
			t.Fatalf("accepted %q as %+v", line, ev)
		}
		if l := m["login"]; l != nil && rules.NormalizeLogin(*l) != ev.Login {
			t.Fatalf("login %q, encoding/json reads %q", ev.Login, *l)
		}
		if tm, err := time.Parse(time.RFC3339Nano, *m["time"]); err != nil || !tm.Equal(ev.Time) {
			t.Fatalf("time %v, time.Parse reads %v, %v", ev.Time, tm, err)
		}
		if a, err := netip.ParseAddr(*m["address"]); err != nil || a.Unmap() != ev.Client {
			t.Fatalf("address %v, netip reads %v, %v", ev.Client, a, err)
		}
		if p := m["pwhash"]; p != nil && *p != ev.PwHash {
			t.Fatalf("pwhash %q, encoding/json reads %q", ev.PwHash, *p)
		}
	})
}

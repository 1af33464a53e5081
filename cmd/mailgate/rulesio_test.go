package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"mailgate/internal/api"
)

func TestRuleLineRoundTrip(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, j := range []api.RuleJSON{
		{Scope: "account", Account: "alice@example.org", Service: "imap", Action: "allow", Match: "192.0.2.0/24", Comment: "office", Expires: &exp},
		{Scope: "account", Account: "@example.org", Service: "all", Action: "deny", Match: "country:CN,RU"},
		{Scope: "account", Account: "bob@example.org", Service: "smtp", Action: "allow", Match: "none"},
		{Scope: "account", Account: "*", Service: "all", Action: "extra", Match: "2001:db8::/32"},
		{Scope: "global", Service: "all", Action: "deny", Match: "203.0.113.7", Comment: "ünïcode <&>"},
	} {
		b, err := json.Marshal(toRuleLine(&j))
		if err != nil {
			t.Fatal(err)
		}
		r, err := parseRuleLine(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		back := api.FromRule(&r)
		if back.Scope != j.Scope || back.Account != j.Account || back.Service != j.Service ||
			back.Action != j.Action || back.Match != j.Match || back.Comment != j.Comment ||
			(j.Expires == nil) != (back.Expires == nil) || (j.Expires != nil && !j.Expires.Equal(*back.Expires)) {
			t.Errorf("%s: round trip gave %+v", b, back)
		}
	}
}

func TestParseRuleLineRefusesBadInput(t *testing.T) {
	for _, line := range []string{
		``,
		`[]`,
		`{"scope":"account","account":"a@b","service":"imap","action":"allow","match":"1.2.3.4","extra_field":1}`,
		`{"scope":"account","account":"a@b","service":"imap","action":"allow","match":"1.2.3.4"} {}`,
		`{"scope":"account","account":"a@b","service":"imap","action":"allow","match":"1.2.3.4"} x`,
		`{"account":"a@b","service":"imap","action":"allow","match":"1.2.3.4"}`,
		`{"scope":"account","account":"a@b","action":"allow","match":"1.2.3.4"}`,
		`{"scope":"account","account":"a@b","service":"imap","action":"allow"}`,
		`{"scope":"account","account":"a@b","service":"imap","action":"allow","match":"1.2.3.999"}`,
		`{"scope":"global","service":"all","action":"allow","match":"none"}`,
		`{"scope":"account","account":"a@b","service":"imap","action":"allow","match":"1.2.3.4","expires":"tomorrow"}`,
		`{"scope":"account","account":"","service":"imap","action":"allow","match":"1.2.3.4"}`,
		`{"scope":"account","account":"a@b","service":"ftp","action":"allow","match":"1.2.3.4"}`,
		`{"scope":"account","account":"a@b","service":"imap","action":"maybe","match":"1.2.3.4"}`,
	} {
		if _, err := parseRuleLine([]byte(line)); err == nil {
			t.Errorf("%s: accepted", line)
		}
	}
}

func TestReadRuleLinesIsAllOrNothingAndNamesLines(t *testing.T) {
	good := `{"scope":"account","account":"a@example.org","service":"imap","action":"allow","match":"192.0.2.1"}`
	in := "# exported\n" + good + "\n\n" + `{"scope":"account"}` + "\n" + good + "\n" + "not json\n"
	rs, err := readRuleLines(strings.NewReader(in))
	if err == nil || rs != nil {
		t.Fatalf("got %d rules, err %v", len(rs), err)
	}
	msg := err.Error()
	if !strings.Contains(msg, "2 bad line(s)") || !strings.Contains(msg, "line 4:") || !strings.Contains(msg, "line 6:") || strings.Contains(msg, "line 2:") {
		t.Errorf("error does not name the bad lines: %v", err)
	}

	rs, err = readRuleLines(strings.NewReader("# c\n" + good + "\r\n" + good))
	if err != nil || len(rs) != 2 {
		t.Fatalf("got %d rules, err %v", len(rs), err)
	}
}

func TestReadRuleLinesLimits(t *testing.T) {
	long := `{"scope":"account","account":"a@example.org","service":"imap","action":"allow","match":"192.0.2.1","comment":"` +
		strings.Repeat("x", maxRuleLine) + `"}`
	_, err := readRuleLines(strings.NewReader(long + "\n"))
	if err == nil || !strings.Contains(err.Error(), "line 1: line longer than") {
		t.Errorf("long line: %v", err)
	}
	var big bytes.Buffer
	line := strings.Repeat(" ", 1000) + "\n"
	for big.Len() <= maxRuleFile+1 {
		big.WriteString(line)
	}
	if _, err := readRuleLines(&big); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("big file: %v", err)
	}
}

func FuzzParseRuleLine(f *testing.F) {
	f.Add([]byte(`{"scope":"account","account":"a@example.org","service":"imap","action":"allow","match":"192.0.2.1","comment":"c","expires":"2030-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"scope":"global","service":"all","action":"deny","match":"2001:db8::/32"}`))
	f.Add([]byte(`{"scope":"account","account":"@example.org","service":"all","action":"deny","match":"country:CN"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseRuleLine(b)
		if err != nil {
			return
		}
		// What parses must export and parse back to the same rule.
		j := api.FromRule(&r)
		out, err := json.Marshal(toRuleLine(&j))
		if err != nil {
			t.Fatal(err)
		}
		r2, err := parseRuleLine(out)
		if err != nil {
			t.Fatalf("%s parsed, its export %s does not: %v", b, out, err)
		}
		if j2 := api.FromRule(&r2); j2.Scope != j.Scope || j2.Account != j.Account || j2.Match != j.Match ||
			j2.Service != j.Service || j2.Action != j.Action || j2.Comment != j.Comment {
			t.Fatalf("%s: round trip %+v != %+v", b, j2, j)
		}
	})
}

package store

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"mailgate/internal/rules"
)

func noticeRules(t testing.TB, n int, account string) []rules.Rule {
	t.Helper()
	var rs []rules.Rule
	for i := range n {
		r := rules.Rule{ID: int64(i + 1), Scope: rules.ScopeAccount, Account: account, Action: rules.Deny,
			Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)}
		if err := r.SetMatch(fmt.Sprintf("10.%d.%d.0/24", i/256%256, i%256)); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	return rs
}

// TestNoticesRoundTrip: what noticesFor sends, ParseRuleNotice reads back
// as the same rules, every payload within PostgreSQL's 8000 bytes; a
// change too large for 100 notices is one resync.
func TestNoticesRoundTrip(t *testing.T) {
	long := strings.Repeat("x", 200) + "@example.com"
	for _, n := range []int{1, 5, 300} {
		rs := noticeRules(t, n, long)
		ps := noticesFor("node1", time.Time{}, 10, 19, rs)
		var adds int
		var got []rules.Rule
		for _, p := range ps {
			if len(p) > 8000 {
				t.Fatalf("payload of %d bytes", len(p))
			}
			nt, removed, err := ParseRuleNotice(p)
			if err != nil || nt.Node != "node1" || nt.Resync {
				t.Fatalf("%d rules: %v %+v", n, err, nt)
			}
			if nt.Add != nil {
				adds++
				if nt.Add[0] != 10 || nt.Add[1] != 19 {
					t.Errorf("add range %v", nt.Add)
				}
			}
			got = append(got, removed...)
		}
		if adds != 1 || len(got) != n {
			t.Fatalf("%d rules: %d add notices, %d removed back", n, adds, len(got))
		}
		for i := range got {
			w := rs[i]
			if got[i].ID != w.ID || got[i].Account != w.Account || got[i].Match != w.Match || got[i].Action != w.Action ||
				got[i].Service != w.Service || got[i].Scope != w.Scope || !got[i].Expires.Equal(w.Expires) {
				t.Fatalf("rule %d: got %+v, want %+v", i, got[i], w)
			}
		}
	}
	ps := noticesFor("node1", time.Time{}, 0, 0, noticeRules(t, 5000, long))
	if len(ps) != 1 || !strings.Contains(ps[0], `"resync":true`) {
		t.Errorf("5000 removed rules: %d notices, first %.80s", len(ps), ps[0])
	}
	if ps := noticesFor("node1", time.Time{}, 1, 1+maxNoticeRange, nil); len(ps) != 1 || !strings.Contains(ps[0], `"resync":true`) {
		t.Errorf("a huge add range: %v", ps)
	}
}

func TestParseRuleNoticeErrors(t *testing.T) {
	for _, p := range []string{
		``, `{}`, `[]`, `{"v":2,"node":"a"}`, `{"v":1}`,
		`{"v":1,"node":"a","add":[5]}`, `{"v":1,"node":"a","add":[5,4]}`, `{"v":1,"node":"a","add":[0,4]}`,
		`{"v":1,"node":"a","add":[1,2000000]}`,
		`{"v":1,"node":"a","del":[{"id":0,"scope":"account","account":"a@b","service":"all","action":"deny","match":"10.0.0.1"}]}`,
		`{"v":1,"node":"a","del":[{"id":1,"scope":"account","account":"a@b","service":"all","action":"deny","match":"10.0.0.1/33"}]}`,
		`{"v":1,"node":"a","del":[{"id":1,"scope":"nope","account":"a@b","service":"all","action":"deny","match":"10.0.0.1"}]}`,
		`{"v":1,"node":"` + strings.Repeat("n", 65) + `"}`,
		strings.Repeat(" ", 8001),
	} {
		if n, _, err := ParseRuleNotice(p); err == nil {
			t.Errorf("%.60q: parsed as %+v", p, n)
		}
	}
}

// FuzzParseRuleNotice: any payload either fails or parses into rules
// that noticesFor sends back as a payload parsing the same. Never a panic.
func FuzzParseRuleNotice(f *testing.F) {
	for _, p := range noticesFor("n1", time.Time{}, 3, 9, noticeRules(f, 2, "a@example.com")) {
		f.Add(p)
	}
	f.Add(`{"v":1,"node":"n","resync":true}`)
	f.Add(`{"v":1,"node":"n","del":[{"id":1,"scope":"global","account":"","service":"imap","action":"allow","match":"country:AT,DE"}]}`)
	f.Fuzz(func(t *testing.T, p string) {
		n, removed, err := ParseRuleNotice(p)
		if err != nil {
			return
		}
		var first, last int64
		if n.Add != nil {
			first, last = n.Add[0], n.Add[1]
		}
		for _, back := range noticesFor(n.Node, time.Time{}, first, last, removed) {
			if _, _, err := ParseRuleNotice(back); err != nil {
				b, _ := json.Marshal(removed)
				t.Fatalf("%q parsed into %s, sent back as %q, which does not parse: %v", p, b, back, err)
			}
		}
	})
}

// Package storetest is the shared test suite every store backend must
// pass: SQLite always, Redis/PostgreSQL when they exist. A backend's test
// calls Run with a function that opens it.
//
// It is test support only; nothing in the daemon imports it.
package storetest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/internal/rules"
	"mailgate/internal/store"
)

// Store is what the suite exercises: the rule and audit methods of a
// backend.
type Store interface {
	AddRules(ctx context.Context, now time.Time, actor string, rs []rules.Rule) ([]rules.Rule, error)
	DeleteRule(ctx context.Context, now time.Time, actor string, id int64) (rules.Rule, error)
	Rules(ctx context.Context) ([]rules.Rule, error)
	Rule(ctx context.Context, id int64) (rules.Rule, error)
	DeleteExpired(ctx context.Context, now time.Time) ([]rules.Rule, error)
	Audit(ctx context.Context, limit int) ([]store.AuditEntry, error)
	Close() error
}

// Run runs the suite. open must return a store over empty data for each
// new t, and a store over the same data when called again with the same t
// after the previous one was closed (the SQLite backend keys a file on
// t.Name()). The suite closes every store it opens.
func Run(t *testing.T, open func(t *testing.T) Store) {
	tests := []struct {
		name string
		f    func(t *testing.T, open func(t *testing.T) Store)
	}{
		{"RoundTrip", testRoundTrip},
		{"IDsIncrease", testIDsIncrease},
		{"Delete", testDelete},
		{"NotFound", testNotFound},
		{"Expiry", testExpiry},
		{"Audit", testAudit},
		{"Reopen", testReopen},
		{"BadInputNoChange", testBadInputNoChange},
		{"Empty", testEmpty},
		{"Concurrent", testConcurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.f(t, open)
		})
	}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func openClosed(t *testing.T, open func(t *testing.T) Store) Store {
	t.Helper()
	s := open(t)
	t.Cleanup(func() { s.Close() })
	return s
}

func mustPrefix(t *testing.T, s string) netip.Prefix {
	t.Helper()
	p, err := rules.ParseMatch(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sample is a set of rules covering every field: IPv4/IPv6 addresses and
// networks, none, expiry, global scope, domain and wildcard accounts, a
// comment with quotes and non-ASCII.
func sample(t *testing.T) []rules.Rule {
	return []rules.Rule{
		{Account: "shop@example.com", Service: rules.SMTP, Action: rules.Allow, Match: mustPrefix(t, "10.0.0.101"), Comment: "shop web server"},
		{Account: "shop@example.com", Service: rules.POP3, Action: rules.Allow, Match: netip.Prefix{}},
		{Account: "@example.org", Service: rules.AllServices, Action: rules.Deny, Match: mustPrefix(t, "2001:db8::/32"), Comment: `a "quoted" comment, ünïcode`},
		{Account: "*", Service: rules.IMAP, Action: rules.Deny, Match: mustPrefix(t, "2001:db8:1::7"), Expires: t0.Add(time.Hour)},
		{Scope: rules.ScopeGlobal, Service: rules.AllServices, Action: rules.Allow, Match: mustPrefix(t, "192.0.2.0/24"), Comment: "office"},
		{Scope: rules.ScopeGlobal, Service: rules.Sieve, Action: rules.Deny, Match: mustPrefix(t, "198.51.100.7")},
		{Account: "bob@example.com", Service: rules.Submission, Action: rules.Allow, Match: mustPrefix(t, "::ffff:203.0.113.5"), Expires: t0.Add(24 * time.Hour)},
		{Account: "alice@example.com", Service: rules.AllServices, Action: rules.Extra, Countries: "FR,AT"},
		{Account: "alice@example.com", Service: rules.IMAP, Action: rules.Extra, Match: mustPrefix(t, "198.51.100.9")},
		{Account: "@example.net", Service: rules.AllServices, Action: rules.Allow, Countries: "DE"},
	}
}

// equalRule compares every stored field.
func equalRule(a, b rules.Rule) bool {
	return a.ID == b.ID && a.Scope == b.Scope && a.Account == b.Account &&
		a.Service == b.Service && a.Action == b.Action && a.Match == b.Match && a.Countries == b.Countries &&
		a.Comment == b.Comment && a.Expires.Equal(b.Expires) &&
		a.Expires.Location() == b.Expires.Location() &&
		a.Created.Equal(b.Created) && a.CreatedBy == b.CreatedBy && a.Source == b.Source
}

func diffRules(t *testing.T, what string, got, want []rules.Rule) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d rules, want %d:\ngot  %+v\nwant %+v", what, len(got), len(want), got, want)
	}
	for i := range got {
		if !equalRule(got[i], want[i]) {
			t.Errorf("%s: rule %d:\ngot  %+v\nwant %+v", what, i, got[i], want[i])
		}
	}
}

func testRoundTrip(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	in := sample(t)
	orig := slices.Clone(in)
	now := t0.Add(1500 * time.Millisecond).In(time.FixedZone("CET", 3600))
	added, err := s.AddRules(ctx, now, "cli:root", in)
	if err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !equalRule(in[i], orig[i]) {
			t.Errorf("AddRules modified its input %d: %+v", i, in[i])
		}
	}
	if len(added) != len(in) {
		t.Fatalf("AddRules returned %d rules, want %d", len(added), len(in))
	}
	wantCreated := t0.Add(time.Second) // UTC, truncated to the second
	for i, r := range added {
		w := orig[i]
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		w.ID = r.ID
		w.Created = wantCreated
		w.CreatedBy = "cli:root"
		if !w.Expires.IsZero() {
			w.Expires = w.Expires.UTC()
		}
		if !equalRule(r, w) {
			t.Errorf("added rule %d:\ngot  %+v\nwant %+v", i, r, w)
		}
		if r.ID <= 0 {
			t.Errorf("added rule %d has id %d", i, r.ID)
		}
	}
	// the IPv4-mapped address was stored as IPv4
	if got := added[6].MatchString(); got != "203.0.113.5" {
		t.Errorf("mapped address stored as %s, want 203.0.113.5", got)
	}
	if !added[1].None() {
		t.Errorf("none rule came back as %s", added[1].MatchString())
	}
	got, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "Rules after add", got, added)
}

func testIDsIncrease(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	var last int64
	var ids []int64
	for i := range 3 {
		added, err := s.AddRules(ctx, t0, "test", sample(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range added {
			if r.ID <= last {
				t.Fatalf("batch %d: id %d after %d", i, r.ID, last)
			}
			last = r.ID
			ids = append(ids, r.ID)
		}
	}
	// Deleting the newest rule must not make its id available again.
	if _, err := s.DeleteRule(ctx, t0, "test", last); err != nil {
		t.Fatal(err)
	}
	added, err := s.AddRules(ctx, t0, "test", sample(t)[:1])
	if err != nil {
		t.Fatal(err)
	}
	if added[0].ID <= last {
		t.Errorf("id %d reused after deleting %d", added[0].ID, last)
	}
	got, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.IsSortedFunc(got, func(a, b rules.Rule) int { return cmp.Compare(a.ID, b.ID) }) {
		t.Error("Rules not ordered by id")
	}
	if want := len(ids); len(got) != want {
		t.Errorf("got %d rules, want %d", len(got), want)
	}
}

func testDelete(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	added, err := s.AddRules(ctx, t0, "cli:root", sample(t))
	if err != nil {
		t.Fatal(err)
	}
	victim := added[2]
	got, err := s.DeleteRule(ctx, t0.Add(time.Minute), "api:alice", victim.ID)
	if err != nil {
		t.Fatal(err)
	}
	if !equalRule(got, victim) {
		t.Errorf("DeleteRule returned\n%+v\nwant\n%+v", got, victim)
	}
	rest, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := slices.Delete(slices.Clone(added), 2, 3)
	diffRules(t, "Rules after delete", rest, want)
}

func testNotFound(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	_, err := s.DeleteRule(ctx, t0, "test", 42)
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("DeleteRule of a missing rule: %v, want ErrNotFound", err)
	}
	if !strings.Contains(err.Error(), "42") {
		t.Errorf("error %q does not name the rule id", err)
	}
	added, err := s.AddRules(ctx, t0, "test", sample(t)[:1])
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Rule(ctx, added[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "Rule by id", []rules.Rule{got}, added)
	if _, err := s.DeleteRule(ctx, t0, "test", added[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Rule(ctx, added[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Rule of a deleted rule: %v, want ErrNotFound", err)
	}
	if _, err := s.DeleteRule(ctx, t0, "test", added[0].ID); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("second DeleteRule: %v, want ErrNotFound", err)
	}
	audit, err := s.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 {
		t.Errorf("failed deletes wrote audit rows: %+v", audit)
	}
}

func testExpiry(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	rs := []rules.Rule{
		{Account: "a@example.com", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1"), Expires: t0.Add(time.Minute)},
		{Account: "b@example.com", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.2")},
		{Account: "c@example.com", Action: rules.Deny, Match: mustPrefix(t, "2001:db8::/48"), Expires: t0.Add(2 * time.Minute)},
		{Scope: rules.ScopeGlobal, Action: rules.Deny, Match: mustPrefix(t, "198.51.100.0/24"), Expires: t0.Add(time.Minute)},
	}
	added, err := s.AddRules(ctx, t0, "test", rs)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := s.DeleteExpired(ctx, t0.Add(time.Minute-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(gone) != 0 {
		t.Fatalf("expired before their time: %+v", gone)
	}
	// Expires <= now: a rule expires at its expiry time exactly.
	gone, err = s.DeleteExpired(ctx, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "first expiry", gone, []rules.Rule{added[0], added[3]})
	gone, err = s.DeleteExpired(ctx, t0.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "second expiry", gone, []rules.Rule{added[2]})
	left, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "left", left, []rules.Rule{added[1]})

	audit, err := s.Audit(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		id int64
		at time.Time
	}{{added[2].ID, t0.Add(time.Hour)}, {added[3].ID, t0.Add(time.Minute)}, {added[0].ID, t0.Add(time.Minute)}}
	if len(audit) != len(want) {
		t.Fatalf("audit: %+v", audit)
	}
	for i, w := range want {
		e := audit[i]
		if e.Op != store.OpExpire || e.Actor != store.ActorExpiry || e.RuleID != w.id || !e.At.Equal(w.at) {
			t.Errorf("audit %d: %+v, want expire of %d by %q at %v", i, e, w.id, store.ActorExpiry, w.at)
		}
	}
}

func testAudit(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	rs := sample(t)[:3]
	added, err := s.AddRules(ctx, t0, "cli:root", rs)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteRule(ctx, t0.Add(time.Hour), "api:alice", added[0].ID); err != nil {
		t.Fatal(err)
	}
	all, err := s.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	type entry struct {
		at     time.Time
		actor  string
		op     string
		ruleID int64
	}
	want := []entry{
		{t0.Add(time.Hour), "api:alice", store.OpRemove, added[0].ID},
		{t0, "cli:root", store.OpAdd, added[2].ID},
		{t0, "cli:root", store.OpAdd, added[1].ID},
		{t0, "cli:root", store.OpAdd, added[0].ID},
	}
	if len(all) != len(want) {
		t.Fatalf("audit has %d entries, want %d: %+v", len(all), len(want), all)
	}
	for i, w := range want {
		e := all[i]
		got := entry{e.At, e.Actor, e.Op, e.RuleID}
		if got != w || e.At.Location() != time.UTC {
			t.Errorf("audit %d: %+v, want %+v", i, got, w)
		}
		if i > 0 && e.ID >= all[i-1].ID {
			t.Errorf("audit not newest first: id %d after %d", e.ID, all[i-1].ID)
		}
	}
	// Detail names account, service, action, match and comment.
	for _, part := range []string{"shop@example.com", "smtp", "allow", "10.0.0.101", `"shop web server"`} {
		if !strings.Contains(all[0].Detail, part) {
			t.Errorf("remove detail %q lacks %q", all[0].Detail, part)
		}
		if !strings.Contains(all[3].Detail, part) {
			t.Errorf("add detail %q lacks %q", all[3].Detail, part)
		}
	}
	if d := all[2].Detail; !strings.Contains(d, "pop3") || !strings.Contains(d, "none") {
		t.Errorf("detail of the none rule: %q", d)
	}
	if d := all[1].Detail; !strings.Contains(d, "@example.org") || !strings.Contains(d, "2001:db8::/32") || !strings.Contains(d, "deny") {
		t.Errorf("detail of the IPv6 rule: %q", d)
	}
	two, err := s.Audit(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(two) != 2 || two[0] != all[0] || two[1] != all[1] {
		t.Errorf("Audit(2) = %+v, want the two newest of %+v", two, all)
	}
	if _, err := s.AddRules(ctx, t0, "", rs); err == nil {
		t.Error("AddRules with no actor succeeded")
	}
}

func testReopen(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := open(t)
	added, err := s.AddRules(ctx, t0, "cli:root", sample(t))
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if _, err := s.DeleteRule(ctx, t0, "cli:root", added[0].ID); err != nil {
		s.Close()
		t.Fatal(err)
	}
	audit1, err := s.Audit(ctx, 0)
	if err != nil {
		s.Close()
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openClosed(t, open)
	got, err := s2.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "Rules after reopen", got, added[1:])
	audit2, err := s2.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(audit1, audit2) {
		t.Errorf("audit after reopen:\n%+v\nwant\n%+v", audit2, audit1)
	}
	// ids keep increasing across a reopen
	more, err := s2.AddRules(ctx, t0, "cli:root", sample(t)[:1])
	if err != nil {
		t.Fatal(err)
	}
	if more[0].ID <= added[len(added)-1].ID {
		t.Errorf("id %d after reopen, not above %d", more[0].ID, added[len(added)-1].ID)
	}
}

func testBadInputNoChange(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	before, err := s.AddRules(ctx, t0, "test", sample(t)[:2])
	if err != nil {
		t.Fatal(err)
	}
	bad := []rules.Rule{
		{Account: "x@example.com", Action: rules.Deny, Match: netip.Prefix{}}, // deny none
		{Account: "", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1")},
		{Account: "a b@example.com", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1")},
		{Scope: rules.ScopeGlobal, Account: "x@example.com", Action: rules.Deny, Match: mustPrefix(t, "192.0.2.1")},
		{Account: "x@example.com", Action: 0, Match: mustPrefix(t, "192.0.2.1")},
		{Account: "x@example.com", Service: rules.OtherService, Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1")},
		{Account: "x@example.com", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1"), Comment: strings.Repeat("x", rules.MaxCommentLen+1)},
		{Account: "x@example.com", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1"), Comment: "bad \xff utf-8"},
		{Account: "x\xfe@example.com", Action: rules.Allow, Match: mustPrefix(t, "192.0.2.1")},
	}
	for i, b := range bad {
		batch := append(sample(t), b) // valid rules first: none of them may be stored
		if _, err := s.AddRules(ctx, t0, "test", batch); err == nil {
			t.Errorf("bad rule %d accepted: %+v", i, b)
		} else if !strings.Contains(err.Error(), fmt.Sprintf("rule %d", len(batch))) {
			t.Errorf("bad rule %d: error %q does not name its position %d", i, err, len(batch))
		}
	}
	after, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	diffRules(t, "Rules after bad input", after, before)
	audit, err := s.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(audit) != 2 {
		t.Errorf("bad input wrote audit rows: %+v", audit)
	}
	// The next good rule gets the next id: bad input consumed none.
	next, err := s.AddRules(ctx, t0, "test", sample(t)[:1])
	if err != nil {
		t.Fatal(err)
	}
	if next[0].ID != before[1].ID+1 {
		t.Errorf("next id %d, want %d", next[0].ID, before[1].ID+1)
	}
}

func testEmpty(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	got, err := s.Rules(ctx)
	if err != nil || len(got) != 0 {
		t.Fatalf("Rules on a new store: %v, %v", got, err)
	}
	added, err := s.AddRules(ctx, t0, "test", nil)
	if err != nil || len(added) != 0 {
		t.Fatalf("AddRules(nil): %v, %v", added, err)
	}
	gone, err := s.DeleteExpired(ctx, t0)
	if err != nil || len(gone) != 0 {
		t.Fatalf("DeleteExpired on a new store: %v, %v", gone, err)
	}
	audit, err := s.Audit(ctx, 10)
	if err != nil || len(audit) != 0 {
		t.Fatalf("Audit on a new store: %v, %v", audit, err)
	}
}

// testConcurrent adds and deletes from several goroutines: no lost
// writes, no "database is locked".
func testConcurrent(t *testing.T, open func(t *testing.T) Store) {
	ctx := t.Context()
	s := openClosed(t, open)
	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				r := rules.Rule{Account: fmt.Sprintf("u%d@example.com", w), Action: rules.Allow,
					Match: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(w), 0, byte(i)}), 32)}
				added, err := s.AddRules(ctx, t0, fmt.Sprintf("w%d", w), []rules.Rule{r})
				if err != nil {
					errs <- err
					return
				}
				if i%5 == 0 {
					if _, err := s.DeleteRule(ctx, t0, fmt.Sprintf("w%d", w), added[0].ID); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	got, err := s.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers * (each - each/5); len(got) != want {
		t.Errorf("%d rules after concurrent writes, want %d", len(got), want)
	}
	audit, err := s.Audit(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if want := workers * (each + each/5); len(audit) != want {
		t.Errorf("%d audit rows, want %d", len(audit), want)
	}
}
